"""The ALERTS widget on both backends: a public dashboard shows its rules' firing instances
to anonymous viewers (nothing of the rules' targets), filtered by severity and rule, exported
as CSV, and a transition pushes a new ``dashboardUpdated`` value."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from api.graphql_dashboards import _follow, live_dashboard
from bootstrap import Pulse, WorkerOptions, bootstrap
from domain import alerts, metrics
from domain.access import Principal
from domain.clock import FrozenClock, now_utc
from domain.errors import ValidationError
from domain.events import Event
from domain.keys import create_key
from domain.settings import Settings
from domain.widgets import parse_widget
from services.dashboards import ANONYMOUS, CURRENT
from tests.api.conftest import Keys, bearer
from workers.dynamodb_rebuild import RebuildTiming, run_pending_rebuild

ALERT_FIELDS = "alerts { rule instance state severity value threshold since message }"
QUERY = f'{{ dashboard(slug: "shop") {{ widgets {{ id data {{ {ALERT_FIELDS} error {{ code }} }} }} }} }}'
RULE = """mutation($name: String!, $threshold: Float!, $severity: AlertSeverity!) { defineAlertRule(input: {
  name: $name, gauge: "stock", condition: BELOW, threshold: $threshold, perDimension: "product",
  severity: $severity, targets: [{kind: LOG}]
}) { name } }"""
OWNER = Principal(key_id="0011223344556677", name="owner", scopes=frozenset({"editor"}))
WIDGETS = [
    {"id": "alerts", "kind": "ALERTS", "title": "Alerts"},
    {"id": "critical", "kind": "ALERTS", "title": "Critical", "source": {"kind": "ALERTS", "severities": ["CRITICAL"]}},
    {"id": "one-rule", "kind": "ALERTS", "title": "Empty", "source": {"kind": "ALERTS", "rules": ["empty-shelf"]}},
]


def gql(client: FlaskClient, query: str, secret: str | None = None, **variables: Any) -> dict[str, Any]:
    response = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=bearer(secret) if secret else {}
    )
    body = response.json
    assert response.status_code == 200 and "errors" not in body, body
    return body["data"]


def project(pulse: Pulse, settings: Settings, clock: FrozenClock) -> None:
    if settings.store == "dynamodb":  # the poller's background task, run once: count the new gauge
        projector = pulse.backend.counters()
        timing = RebuildTiming(fence_seconds=0.05, settle_seconds=0.05)
        run_pending_rebuild(pulse.store, pulse.backend.views, projector.bucketing, projector.history, "test", timing)
    pulse.worker(WorkerOptions(clock=clock)).catch_up()


def stock(client: FlaskClient, keys: Keys, at: datetime, **levels: float) -> None:
    events = [
        {"type": "stock", "occurredAt": at.isoformat(), "properties": {"product": product, "level": level}}
        for product, level in levels.items()
    ]
    assert client.post("/v1/events", json={"events": events}, headers=bearer(keys.ingest)).status_code == 202


@pytest.fixture
def editor(pulse: Pulse) -> str:
    return create_key(pulse.store, "designer", ["editor"])[1]


def test_a_public_dashboard_shows_its_firing_alerts_to_anonymous_viewers(
    client: FlaskClient, pulse: Pulse, keys: Keys, editor: str, settings: Settings, clock: FrozenClock
) -> None:
    gauge = 'defineGauge(input: {name: "stock", eventType: "stock", valueProperty: "level", keyProperty: "product"})'
    gql(client, f"mutation {{ {gauge} {{ name }} }}", keys.admin)
    gql(client, RULE, editor, name="low-stock", threshold=5, severity="WARNING")
    gql(client, RULE, editor, name="empty-shelf", threshold=1, severity="CRITICAL")
    at = now_utc(clock) - timedelta(seconds=30)
    stock(client, keys, at, mug=3, beans=0, milk=40)
    project(pulse, settings, clock)
    create = "mutation($input: DashboardInput!) { createDashboard(input: $input) { slug } }"
    gql(client, create, editor, input={"slug": "shop", "name": "Shop", "visibility": "PUBLIC", "widgets": WIDGETS})
    gql(client, 'mutation { publishDashboard(slug: "shop") { version } }', editor)

    response = client.post("/graphql", json={"query": QUERY})  # no key
    data = {w["id"]: w["data"] for w in response.json["data"]["dashboard"]["widgets"]}
    shown = [(a["rule"], a["instance"], a["state"], a["severity"], a["value"]) for a in data["alerts"]["alerts"]]
    assert shown == [  # most severe first
        ("empty-shelf", "beans", "FIRING", "CRITICAL", 0.0),
        ("low-stock", "beans", "FIRING", "WARNING", 0.0),
        ("low-stock", "mug", "FIRING", "WARNING", 3.0),
    ]
    first = data["alerts"]["alerts"][0]
    assert first["threshold"] == 1 and first["message"] and first["since"].startswith(str(now_utc(clock).year))
    assert [a["rule"] for a in data["critical"]["alerts"]] == ["empty-shelf"]
    assert [a["rule"] for a in data["one-rule"]["alerts"]] == ["empty-shelf"]

    exported = client.get("/v1/dashboards/shop/widgets/alerts.csv")  # public: no key
    assert exported.status_code == 200
    rows = list(csv.reader(io.StringIO(exported.get_data(as_text=True))))
    assert rows[0] == ["rule", "instance", "state", "severity", "value", "threshold", "since", "message"]
    assert [row[:3] for row in rows[1:]] == [[r, i, s] for r, i, s, _, _ in shown]

    # Restocked: the instances resolve and leave the widget.
    stock(client, keys, at + timedelta(seconds=10), mug=30, beans=30)
    project(pulse, settings, clock)
    assert eventually(lambda: all(w["data"]["alerts"] == [] for w in fetch_widgets(client)))


def fetch_widgets(client: FlaskClient) -> list[dict[str, Any]]:
    return client.post("/graphql", json={"query": QUERY}).json["data"]["dashboard"]["widgets"]


def eventually(check: Callable[[], bool], attempts: int = 100) -> bool:
    """The API process sees another process's transitions within its refresh interval."""
    for _ in range(attempts):
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_bad_alerts_filters_name_the_field() -> None:
    bad = {"id": "a", "kind": "ALERTS", "title": "A", "source": {"kind": "ALERTS", "severities": ["URGENT"]}}
    with pytest.raises(ValidationError) as refused:
        parse_widget(bad)
    assert [e.field for e in refused.value.errors] == ["widget.source.severities"]


@pytest.fixture
def live_pulse(sqlite_settings: Settings, clock: FrozenClock) -> Iterator[Pulse]:
    settings = Settings(store="sqlite", db=sqlite_settings.db, live_interval_seconds=0.02, auth=True)
    pulse = bootstrap(settings, clock=clock)
    yield pulse
    pulse.close()


def test_a_transition_pushes_a_new_dashboard_value(live_pulse: Pulse, clock: FrozenClock) -> None:
    pulse = live_pulse
    metrics.define_gauge(pulse.store, metrics.validate_gauge("stock", "stock", "level", "product"))
    low = alerts.AlertRule(name="low-stock", condition="BELOW", threshold=5, gauge="stock", per_dimension="product")
    alerts.define_rule(pulse.store, low)
    pulse.dashboards.create(OWNER, "shop", {"name": "Shop", "visibility": "PUBLIC"}, WIDGETS[:1])
    pulse.dashboards.publish(OWNER, "shop")

    def renew():
        return live_dashboard(pulse, ANONYMOUS, "shop", CURRENT)

    async def scenario() -> None:
        live = renew()
        first = live.current()
        assert first.widgets[0].data.alerts == []
        stream = _follow(live, first, renew)
        try:
            assert await anext(stream) is first
            at = datetime.fromtimestamp(clock.now() - 5, UTC)
            pulse.store.ingest([Event(type="stock", occurred_at=at, properties={"product": "mug", "level": 2})])
            pulse.worker(WorkerOptions(clock=clock)).catch_up()
            pushed = await asyncio.wait_for(anext(stream), 10)
            assert [(a.rule, a.instance, a.state) for a in pushed.widgets[0].data.alerts] == [
                ("low-stock", "mug", "FIRING")
            ]
        finally:
            await stream.aclose()

    asyncio.run(scenario())
