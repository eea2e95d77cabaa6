"""The scheduled `alert_tick` Lambda handler: evaluates for what time changes and delivers
what the outbox owes (on Lambda no dispatcher thread runs between invocations)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bootstrap import WorkerOptions, bootstrap
from domain import alerts
from domain import metrics as defs
from domain.alerts import AlertRule, Target
from domain.events import Event
from domain.settings import Settings
from services.alert_delivery import Outbox
from workers import lambda_handlers


@pytest.fixture
def lambda_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "pulse-production")
    monkeypatch.setenv("PULSE_STORE", "sqlite")
    monkeypatch.setenv("PULSE_DB", str(tmp_path / "pulse.db"))
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    lambda_handlers.reset_runtime()
    yield Settings(store="sqlite", db=str(tmp_path / "pulse.db"))
    lambda_handlers.reset_runtime()


def test_the_tick_delivers_what_a_batch_left_owed_once(lambda_env: Settings) -> None:
    pulse = bootstrap(lambda_env, create=True)
    defs.define_gauge(pulse.store, defs.validate_gauge("stock", "stock_level", "level", "product"))
    rule = AlertRule(
        name="low-stock",
        condition="BELOW",
        threshold=5,
        gauge="stock",
        per_dimension="product",
        targets=(Target("LOG"),),
    )
    alerts.define_rule(pulse.store, rule)
    at = datetime.now(UTC) - timedelta(seconds=1)  # the Lambda runtime reads the system clock
    pulse.store.ingest([Event(type="stock_level", occurred_at=at, properties={"product": "mug", "level": 2})])
    # A worker without a dispatcher (as on Lambda) records the transition and delivers nothing.
    pulse.worker(WorkerOptions()).catch_up()
    outbox = Outbox(pulse.store, {})
    assert [t.to_state for t in alerts.load_rule(pulse.store, "low-stock").history] == ["FIRING"]
    assert outbox.deliveries("low-stock") == []

    assert lambda_handlers.alert_tick() == {"transitions": 0, "delivered": 1, "failed": 0}
    assert lambda_handlers.alert_tick() == {"transitions": 0, "delivered": 0, "failed": 0}
    assert [(d.instance, d.status) for d in outbox.deliveries("low-stock")] == [("mug", "delivered")]
    pulse.close()
