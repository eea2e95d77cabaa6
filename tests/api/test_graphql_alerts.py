"""Alerts over GraphQL: rules, instances, history, deliveries, backtest, and the scopes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from bootstrap import Pulse, WorkerOptions
from domain import metrics as defs
from domain.clock import FrozenClock, now_utc
from domain.events import Event
from domain.keys import create_key
from tests.api.conftest import Keys, bearer, http_layer_only

LOW_STOCK = """
mutation { defineAlertRule(input: {
  name: "low-stock", gauge: "stock", condition: BELOW, threshold: 5, perDimension: "product",
  severity: CRITICAL, targets: [{kind: LOG}]
}) { name severity version instances { key } } }
"""


@pytest.fixture
def editor(pulse: Pulse) -> str:
    return create_key(pulse.store, "shop-editor", ["editor"])[1]


@pytest.fixture
def shop(pulse: Pulse) -> Pulse:
    defs.define_gauge(pulse.store, defs.validate_gauge("stock", "stock_level", "level", "product"))
    defs.define_metric(pulse.store, defs.validate_metric("revenue", "sale", "sum", "amount"))
    return pulse


def gql(client: FlaskClient, secret: str, query: str, **variables: Any) -> dict[str, Any]:
    return client.post("/graphql", json={"query": query, "variables": variables}, headers=bearer(secret)).json


def project(pulse: Pulse, clock: FrozenClock) -> None:
    pulse.worker(WorkerOptions(clock=clock)).catch_up()


@http_layer_only
def test_an_editor_defines_a_rule_and_a_reader_sees_its_instances_fire(
    client: FlaskClient, shop: Pulse, keys: Keys, editor: str, clock: FrozenClock
) -> None:
    defined = gql(client, editor, LOW_STOCK)
    assert defined["data"]["defineAlertRule"] == {
        "name": "low-stock",
        "severity": "CRITICAL",
        "version": 1,
        "instances": [],
    }
    at = now_utc(clock) - timedelta(seconds=5)
    shop.store.ingest(
        [
            Event(type="stock_level", occurred_at=at, properties={"product": "mug", "level": 2}),
            Event(type="stock_level", occurred_at=at, properties={"product": "beans", "level": 40}),
        ]
    )
    project(shop, clock)
    rule = gql(client, keys.read, '{ alertRule(name: "low-stock") { firing instances { key state value } } }')
    assert rule["data"]["alertRule"] == {"firing": 1, "instances": [{"key": "mug", "state": "FIRING", "value": 2.0}]}
    history = gql(
        client, keys.read, '{ alertHistory(rule: "low-stock") { instance fromState toState notified message } }'
    )
    assert history["data"]["alertHistory"] == [
        {
            "instance": "mug",
            "fromState": "NORMAL",
            "toState": "FIRING",
            "notified": True,
            "message": "low-stock is FIRING: value 2 (below 5) for product=mug",
        }
    ]
    listed = gql(client, keys.read, "{ alertRules { name firing } }")
    assert listed["data"]["alertRules"] == [{"name": "low-stock", "firing": 1}]


@http_layer_only
def test_a_reader_may_not_change_rules(client: FlaskClient, shop: Pulse, keys: Keys) -> None:
    answer = gql(client, keys.read, LOW_STOCK)
    assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert gql(client, keys.admin, LOW_STOCK)["data"]["defineAlertRule"]["name"] == "low-stock"


@http_layer_only
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ('gauge: "no-such-gauge", condition: BELOW, threshold: 5, perDimension: "product"', "input.gauge"),
        ('gauge: "stock", condition: BELOW, threshold: 5', "input.filters"),
        ('metric: "revenue", condition: ABOVE, threshold: 5, perDimension: "store"', "input.perDimension"),
        ('metric: "revenue", condition: OUTSIDE, threshold: 5', "input.upper"),
        ('metric: "revenue", condition: ABOVE, threshold: 5, window: 0', "input.window"),
        (
            'metric: "revenue", condition: ABOVE, threshold: 5, targets: [{kind: WEBHOOK, url: "http://x/h"}]',
            "input.targets[0].secret",
        ),
    ],
)
def test_bad_rules_are_refused_naming_the_field(
    client: FlaskClient, shop: Pulse, editor: str, fields: str, field: str
) -> None:
    answer = gql(client, editor, f'mutation {{ defineAlertRule(input: {{name: "r", {fields}}}) {{ name }} }}')
    error = answer["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert field in [e["field"] for e in error["extensions"]["errors"]]
    assert gql(client, editor, "{ alertRules { name } }")["data"]["alertRules"] == []


@http_layer_only
def test_pause_snooze_and_delete(client: FlaskClient, shop: Pulse, editor: str, clock: FrozenClock) -> None:
    gql(client, editor, LOW_STOCK)
    paused = gql(client, editor, 'mutation { pauseAlertRule(name: "low-stock") { paused } }')
    assert paused["data"]["pauseAlertRule"] == {"paused": True}
    until = (now_utc(clock) + timedelta(hours=1)).isoformat()
    snoozed = gql(
        client,
        editor,
        'mutation($until: DateTime) { snoozeAlertRule(name: "low-stock", until: $until) { snoozedUntil } }',
        until=until,
    )
    assert snoozed["data"]["snoozeAlertRule"]["snoozedUntil"].startswith(until[:19])
    past = gql(
        client,
        editor,
        'mutation($until: DateTime) { snoozeAlertRule(name: "low-stock", until: $until) { name } }',
        until=(now_utc(clock) - timedelta(hours=1)).isoformat(),
    )
    assert past["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert gql(client, editor, 'mutation { deleteAlertRule(name: "low-stock") }')["data"]["deleteAlertRule"]
    missing = gql(client, editor, '{ alertRule(name: "low-stock") { name } }')
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"


@http_layer_only
def test_test_send_is_logged_as_a_delivery(client: FlaskClient, shop: Pulse, editor: str) -> None:
    gql(client, editor, LOW_STOCK)
    sent = gql(client, editor, 'mutation { testAlertRule(name: "low-stock") { target status attempts } }')
    assert sent["data"]["testAlertRule"] == [{"target": "LOG:", "status": "delivered", "attempts": 1}]
    log = gql(client, editor, '{ notificationDeliveries(rule: "low-stock") { target status } }')
    assert log["data"]["notificationDeliveries"] == [{"target": "LOG:", "status": "delivered"}]


@http_layer_only
def test_backtest_replays_a_threshold_over_the_stored_counters(
    client: FlaskClient, shop: Pulse, keys: Keys, clock: FrozenClock
) -> None:
    start = now_utc(clock).replace(second=0, microsecond=0) - timedelta(minutes=30)
    # Revenue per minute: quiet, a 3-minute spike, quiet again.
    amounts = [10] * 10 + [500] * 3 + [10] * 10
    shop.store.ingest(
        [
            Event(type="sale", occurred_at=start + timedelta(minutes=i, seconds=20), properties={"amount": amount})
            for i, amount in enumerate(amounts)
        ]
    )
    project(shop, clock)
    query = """query($from: DateTime!, $to: DateTime) { alertBacktest(
      rule: {name: "spike", metric: "revenue", condition: ABOVE, threshold: 100, forSeconds: %s},
      from: $from, to: $to) { steps transitions { toState at notified } } }"""
    window = {"from": start.isoformat(), "to": (start + timedelta(minutes=25)).isoformat()}
    fired = gql(client, keys.read, query % 0, **window)["data"]["alertBacktest"]
    assert fired["steps"] == 25
    assert [(t["toState"], t["at"][11:16]) for t in fired["transitions"]] == [
        ("FIRING", (start + timedelta(minutes=10)).strftime("%H:%M")),
        ("NORMAL", (start + timedelta(minutes=13)).strftime("%H:%M")),
    ]
    held = gql(client, keys.read, query % 600, **window)["data"]["alertBacktest"]
    assert [t["toState"] for t in held["transitions"]] == ["PENDING", "NORMAL"], "a 3-minute spike is held back"
    assert gql(client, keys.read, "{ alertRules { name } }")["data"]["alertRules"] == [], "nothing saved"


@http_layer_only
def test_the_alert_updated_feed_pushes_only_new_transitions_of_every_rule(shop: Pulse, clock: FrozenClock) -> None:
    from api.graphql_alerts import _TransitionFeed
    from domain import alerts
    from domain.alerts import AlertRule

    low = AlertRule(name="low-stock", condition="BELOW", threshold=5, gauge="stock", per_dimension="product")
    alerts.define_rule(shop.store, low)
    at = now_utc(clock) - timedelta(seconds=5)
    shop.store.ingest([Event(type="stock_level", occurred_at=at, properties={"product": "mug", "level": 2})])
    project(shop, clock)
    feed = _TransitionFeed(shop.store, None)
    feed.start()  # the mug's firing happened before: not news
    assert feed.poll() == []
    alerts.define_rule(
        shop.store, AlertRule(name="very-low", condition="BELOW", threshold=1, gauge="stock", per_dimension="product")
    )
    shop.store.ingest(
        [Event(type="stock_level", occurred_at=at + timedelta(seconds=1), properties={"product": "beans", "level": 0})]
    )
    project(shop, clock)
    assert sorted((t.rule, t.instance, t.to_state) for t in feed.poll()) == [
        ("low-stock", "beans", "FIRING"),
        ("very-low", "beans", "FIRING"),
    ]
    assert feed.poll() == []
