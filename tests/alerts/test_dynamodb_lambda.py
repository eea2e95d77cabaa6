"""Alerts on the AWS path: the Lambda stream handler evaluates a batch, records its
transition and delivers it once, however often Lambda delivers the batch (DynamoDB Local)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from domain import alerts
from domain import metrics as defs
from domain.alerts import AlertRule, Target
from domain.events import Event
from services.alert_delivery import Outbox
from tests.dynamodb_projections.conftest import DynamoRig, make_dynamo_rig  # noqa: F401 - fixture
from tests.dynamodb_projections.test_lambda_handler import OK, Capture, lambda_env  # noqa: F401 - fixture
from tests.support import real_now
from workers.lambda_handlers import alert_tick, on_event_stream, run_rebuilds


@pytest.fixture
def on_lambda(lambda_env: DynamoRig, monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoRig]:  # noqa: F811
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "pulse-production")
    yield lambda_env


def test_a_batch_delivered_twice_records_and_notifies_once(on_lambda: DynamoRig) -> None:
    rig = on_lambda
    capture = Capture(rig)
    try:
        defs.define_gauge(rig.events, defs.validate_gauge("stock", "stock_level", "level", "product"))
        rule = AlertRule(
            name="low-stock",
            condition="BELOW",
            threshold=5,
            gauge="stock",
            per_dimension="product",
            targets=(Target("LOG"),),
        )
        alerts.define_rule(rig.events, rule)
        run_rebuilds({}, None)  # the gauge's (empty) rebuild: its readings are kept from now on
        rig.events.ingest(
            [Event(type="stock_level", occurred_at=real_now(), properties={"product": "mug", "level": 2})]
        )
        batch = capture.lambda_event(capture.next_records())
        assert on_event_stream(batch, None) == OK
        assert on_event_stream(batch, None) == OK  # Lambda delivers it again
        history = alerts.load_rule(rig.events, "low-stock").history
        assert [(t.instance, t.to_state) for t in history] == [("mug", "FIRING")]
        deliveries = Outbox(rig.events, {}).deliveries("low-stock")
        assert [(d.instance, d.status) for d in deliveries] == [("mug", "delivered")]
        assert alert_tick({}, None)["delivered"] == 0, "nothing is left owed"
    finally:
        capture.close()
