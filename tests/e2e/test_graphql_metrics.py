"""GraphQL metrics end to end through the real Flask app: real keys, events posted over
REST, the backend's real worker, queries and mutations over /graphql. All in this
process: the app's clock is frozen at an awkward instant (tests/support.py) and the
events are placed relative to it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from domain.clock import FrozenClock, now_utc
from domain.keys import create_key
from projections.counters import PROJECTION
from tests.projections.conftest import BACKENDS, ProjectionRig
from tests.support import at_awkward_instants


@dataclasses.dataclass
class Live:
    rig: ProjectionRig
    client: FlaskClient
    keys: dict[str, str]
    #: The app's (frozen) now, and the start of its hour.
    now: datetime

    @property
    def hour(self) -> datetime:
        return self.now.replace(minute=0, second=0, microsecond=0)

    def gql(self, query: str, key: str | None = "read", **variables: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        response = self.client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
        assert response.status_code == 200, response.data
        return response.json

    def data(self, query: str, key: str = "read", **variables: Any) -> dict[str, Any]:
        body = self.gql(query, key, **variables)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def post(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        response = self.client.post(
            "/v1/events", json={"events": events}, headers={"Authorization": f"Bearer {self.keys['ingest']}"}
        )
        assert response.status_code == 202, response.json
        return response.json

    def catch_up(self) -> None:
        self.rig.catch_up(100)


# The positioned backends; DynamoDB's GraphQL answers are tests/dynamodb_projections/test_graphql.py.
@pytest.fixture(params=["memory", "sqlite"])
def live(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Iterator[Live]:
    rig = BACKENDS[request.param](tmp_path, "Europe/Paris")
    keys = {scope: create_key(rig.events, f"k-{scope}", [scope])[1] for scope in ("ingest", "read", "admin")}
    app = create_app(dataclasses.replace(rig.settings, auth=True), clock=clock)
    yield Live(rig, app.test_client(), keys, now_utc(clock))
    views = app.extensions["pulse"].views
    if views is not None:
        views.close()
    rig.close()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


DEFINE_REVENUE = """mutation { defineMetric(input: {name: "revenue", eventType: "sale", aggregation: SUM,
  valueProperty: "amount", dimensions: ["category", "store"]}) { name eventType aggregation valueProperty
  dimensions filters { property value } builtin version } }"""
DEFINE_STOCK = """mutation { defineGauge(input: {name: "stock", eventType: "stock_level", valueProperty: "level",
  keyProperty: "product"}) { name version } }"""
SERIES = """query($metric: String!, $resolution: Resolution!, $last: Int, $filter: [DimensionFilter!],
  $compareTo: Comparison) { series(metric: $metric, resolution: $resolution, last: $last, filter: $filter,
  compareTo: $compareTo) { metric resolution watermark points { bucket value count partial }
  previous { bucket value count partial } } }"""


def sale(n: int, at: datetime, amount: float, category: str, store: str) -> dict[str, Any]:
    return {
        "id": f"sale-{n}",
        "type": "sale",
        "occurredAt": iso(at),
        "properties": {"amount": amount, "category": category, "store": store},
    }


@at_awkward_instants
def test_live_numbers_through_graphql(live: Live) -> None:
    defined = live.data(DEFINE_REVENUE, key="admin")["defineMetric"]
    assert defined == {
        "name": "revenue",
        "eventType": "sale",
        "aggregation": "SUM",
        "valueProperty": "amount",
        "dimensions": ["category", "store"],
        "filters": [],
        "builtin": False,
        "version": 1,
    }
    live.data(DEFINE_STOCK, key="admin")
    events = [
        sale(1, live.hour - timedelta(hours=2, minutes=-5), 10, "coffee", "harbor"),  # late: two hours ago
        sale(2, live.hour - timedelta(hours=1, minutes=-1), 4.5, "pastry", "harbor"),
        sale(3, live.now, 20, "coffee", "downtown"),
        sale(4, live.now, 2.5, "coffee", "harbor"),
        {
            "id": "s-mug-1",
            "type": "stock_level",
            "occurredAt": iso(live.now),
            "properties": {"product": "mug", "level": 7},
        },
        {
            "id": "s-mug-0",
            "type": "stock_level",
            "occurredAt": iso(live.now - timedelta(minutes=5)),  # older reading, delivered later
            "properties": {"product": "mug", "level": 30},
        },
    ]
    assert live.post(events[:4])["accepted"] == 4
    result = live.post([*events[4:], events[2]])  # a resend of sale-3
    assert (result["accepted"], result["duplicates"]) == (2, 1)
    live.catch_up()

    series = live.data(SERIES, metric="revenue", resolution="HOUR", last=3)["series"]
    assert series["metric"] == "revenue" and series["resolution"] == "HOUR"
    assert [p["value"] for p in series["points"]] == [10.0, 4.5, 22.5]
    assert [p["count"] for p in series["points"]] == [1, 1, 2]
    assert [p["partial"] for p in series["points"]] == [False, False, True]
    assert datetime.fromisoformat(series["points"][-1]["bucket"]) == live.hour
    assert datetime.fromisoformat(series["watermark"]) == live.now
    assert series["previous"] is None

    harbor = live.data(
        SERIES, metric="revenue", resolution="HOUR", last=1, filter=[{"dimension": "store", "value": "harbor"}]
    )
    assert harbor["series"]["points"][0]["value"] == 2.5

    builtin = live.data(SERIES, metric="sale", resolution="DAY", last=1)["series"]
    assert (
        builtin["points"][0]["count"]
        == builtin["points"][0]["value"]
        == sum(
            1
            for e in events
            if e["type"] == "sale" and datetime.fromisoformat(e["occurredAt"]) >= builtin_day_start(builtin)
        )
    )

    rows = live.data(
        '{ breakdown(metric: "revenue", dimension: "category", resolution: HOUR, last: 3) { key value count } }'
    )
    assert rows["breakdown"] == [
        {"key": "coffee", "value": 32.5, "count": 3},
        {"key": "pastry", "value": 4.5, "count": 1},
    ]

    gauges = live.data('{ gauges(name: "stock") { key value occurredAt eventId } }')["gauges"]
    assert gauges == [{"key": "mug", "value": 7.0, "occurredAt": live.now.isoformat(), "eventId": "s-mug-1"}]
    assert live.data('{ gauges(name: "stock", keys: ["beans"]) { key } }')["gauges"] == []

    metrics = live.data("{ metrics { name builtin aggregation } }")["metrics"]
    assert metrics == [
        {"name": "revenue", "builtin": False, "aggregation": "SUM"},
        {"name": "sale", "builtin": True, "aggregation": "COUNT"},
        {"name": "stock_level", "builtin": True, "aggregation": "COUNT"},
    ]
    status = live.data("{ projections { name checkpoint lagEvents lagSeconds eventsPerSecond definitionsVersion } }")
    (metrics_projection,) = [p for p in status["projections"] if p["name"] == PROJECTION]
    assert metrics_projection["name"] == "metrics"
    assert metrics_projection["definitionsVersion"] == 2
    if live.rig.backend == "sqlite":
        assert metrics_projection["lagEvents"] == 0 and metrics_projection["lagSeconds"] == 0.0


def builtin_day_start(series: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(series["points"][0]["bucket"]).astimezone(UTC)


def test_lag_is_visible_before_the_worker_runs(live: Live) -> None:
    live.post([sale(1, live.now, 1, "coffee", "harbor"), sale(2, live.now, 1, "coffee", "harbor")])
    (status,) = [
        p
        for p in live.data("{ projections { name checkpoint lagEvents lagSeconds } }")["projections"]
        if p["name"] == PROJECTION
    ]
    # Lag counts every event of the log the checkpoint has not passed: the 2 facts, and the
    # keys created as events before them.
    assert status["checkpoint"] == "0" and status["lagEvents"] >= 2 and status["lagSeconds"] >= 0
    live.catch_up()
    statuses = live.data("{ projections { lagEvents } }")["projections"]
    assert statuses and all(status["lagEvents"] == 0 for status in statuses)


@at_awkward_instants
def test_compare_to_aligns_every_point(live: Live) -> None:
    live.data(DEFINE_REVENUE, key="admin")
    live.post(
        [
            sale(1, live.hour - timedelta(hours=5, minutes=-10), 8, "coffee", "harbor"),
            sale(2, live.now, 1, "coffee", "harbor"),
        ]
    )
    live.catch_up()
    series = live.data(SERIES, metric="revenue", resolution="HOUR", last=3, compareTo="PREVIOUS_PERIOD")["series"]
    points, previous = series["points"], series["previous"]
    assert len(previous) == len(points) == 3
    assert [p["partial"] for p in previous] == [p["partial"] for p in points] == [False, False, True]
    shift = [
        datetime.fromisoformat(p["bucket"]) - datetime.fromisoformat(q["bucket"])
        for p, q in zip(points, previous, strict=True)
    ]
    assert shift == [timedelta(hours=3)] * 3
    assert [p["value"] for p in previous] == [8.0, 0.0, 0.0]  # three hours before each point
    week = live.data(SERIES, metric="revenue", resolution="DAY", last=2, compareTo="SAME_PERIOD_LAST_WEEK")["series"]
    assert [p["partial"] for p in week["previous"]] == [False, True]


@at_awkward_instants
def test_updating_and_deleting_a_metric_rebuilds_its_counters(live: Live) -> None:
    live.post([sale(i, live.now - timedelta(minutes=i), i, ["coffee", "tea"][i % 2], "harbor") for i in range(1, 7)])
    live.catch_up()
    live.data(DEFINE_REVENUE, key="admin")  # defined after the facts: backfilled
    live.catch_up()
    # Two days: the sales are minutes old, which is yesterday just after midnight in Paris.
    days = live.data(SERIES, metric="revenue", resolution="DAY", last=2)["series"]["points"]
    assert sum(p["value"] for p in days) == 21.0

    updated = live.data(
        """mutation { updateMetric(input: {name: "revenue", eventType: "sale", aggregation: MAX,
        valueProperty: "amount", filters: [{property: "category", value: "tea"}]}) {
        aggregation filters { property value } version } }""",
        key="admin",
    )["updateMetric"]
    assert updated == {"aggregation": "MAX", "filters": [{"property": "category", "value": "tea"}], "version": 2}
    live.catch_up()
    days = live.data(SERIES, metric="revenue", resolution="DAY", last=2)["series"]["points"]
    value = max(p["value"] for p in days if p["count"])
    assert (value, sum(p["count"] for p in days)) == (5.0, 3)  # tea sales are 1, 3, 5

    deleted = live.data('mutation { deleteMetric(name: "revenue") { name } }', key="admin")
    assert deleted == {"deleteMetric": {"name": "revenue"}}
    live.catch_up()
    errors = live.gql('{ series(metric: "revenue", resolution: DAY) { metric } }')["errors"]
    assert errors[0]["extensions"]["errors"][0]["field"] == "metric"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ('{ series(metric: "nope", resolution: HOUR) { metric } }', "metric"),
        ('{ series(metric: "revenue", resolution: HOUR, last: 0) { metric } }', "last"),
        ('{ series(metric: "revenue", resolution: HOUR, last: 10001) { metric } }', "last"),
        (
            '{ series(metric: "revenue", resolution: HOUR, from: "2026-02-01T00:00:00Z", last: 3) { metric } }',
            "last",
        ),
        (
            '{ series(metric: "revenue", resolution: HOUR, from: "2026-02-02T00:00:00Z",'
            ' to: "2026-02-01T00:00:00Z") { metric } }',
            "from",
        ),
        ('{ series(metric: "revenue", resolution: MINUTE, from: "2020-01-01T00:00:00Z") { metric } }', "from"),
        ('{ series(metric: "revenue", resolution: HOUR, from: "2026-02-01T00:00:00") { metric } }', "from"),
        (
            '{ series(metric: "revenue", resolution: HOUR, filter: [{dimension: "colour", value: "red"}]) { metric } }',
            "filter[0].dimension",
        ),
        ('{ breakdown(metric: "revenue", dimension: "colour") { key } }', "dimension"),
        ('{ breakdown(metric: "revenue", dimension: "store", top: 0) { key } }', "top"),
        ('{ breakdown(metric: "nope", dimension: "store") { key } }', "metric"),
        ('{ gauges(name: "nope") { key } }', "name"),
    ],
)
def test_bad_arguments_are_clear_errors_naming_the_argument(live: Live, query: str, field: str) -> None:
    live.data(DEFINE_REVENUE, key="admin")
    body = live.gql(query)
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["errors"][0]["field"] == field
    assert field.split("[")[0] in error["message"]


@pytest.mark.parametrize(
    ("mutation", "code", "field"),
    [
        ('mutation { defineMetric(input: {name: "x y", eventType: "sale"}) { name } }', "BAD_USER_INPUT", "input.name"),
        (
            'mutation { defineMetric(input: {name: "t", eventType: "sale", aggregation: SUM}) { name } }',
            "BAD_USER_INPUT",
            "input.valueProperty",
        ),
        (
            'mutation { defineMetric(input: {name: "t", eventType: "sale", dimensions: ["a", "b", "c", "d"]})'
            " { name } }",
            "BAD_USER_INPUT",
            "input.dimensions",
        ),
        ('mutation { updateMetric(input: {name: "nope", eventType: "sale"}) { name } }', "NOT_FOUND", None),
        ('mutation { deleteMetric(name: "nope") { name } }', "NOT_FOUND", None),
        (
            'mutation { defineGauge(input: {name: "g", eventType: "x", valueProperty: ""}) { name } }',
            "BAD_USER_INPUT",
            "input.valueProperty",
        ),
    ],
)
def test_bad_definitions_are_refused_and_nothing_is_recorded(
    live: Live, mutation: str, code: str, field: str | None
) -> None:
    body = live.gql(mutation, key="admin")
    (error,) = body["errors"]
    assert error["extensions"]["code"] == code
    if field:
        assert error["extensions"]["errors"][0]["field"] == field
    assert live.data("{ metrics { name } gaugeDefinitions { name } }") == {"metrics": [], "gaugeDefinitions": []}


def test_scopes(live: Live) -> None:
    assert live.gql("{ metrics { name } }", key=None)["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert live.gql("{ metrics { name } }", key="ingest")["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert live.gql(DEFINE_REVENUE, key="read")["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert live.data(DEFINE_REVENUE, key="admin")["defineMetric"]["name"] == "revenue"
    assert live.data("{ metrics { name } }", key="admin")["metrics"] == [{"name": "revenue"}]
