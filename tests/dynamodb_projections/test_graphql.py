"""GraphQL queries served from the DynamoDB view store, through the real Flask app."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from datetime import datetime, timedelta

from flask.testing import FlaskClient

from api.app import create_app
from domain import metrics as defs
from domain.clock import FrozenClock
from domain.keys import create_key
from projections.counters import PROJECTION
from tests.dynamodb_projections.conftest import DynamoRig
from tests.projections.oracle import all_facts
from tests.projections.test_exactly_once import REVENUE, START, STOCK, shop_events


def graphql(client: FlaskClient, secret: str, query: str) -> dict:
    response = client.post("/graphql", json={"query": query}, headers={"Authorization": f"Bearer {secret}"})
    body = response.get_json()
    assert response.status_code == 200 and "errors" not in body, body
    return body["data"]


def test_series_breakdown_gauges_and_status_come_from_dynamodb(rig: DynamoRig, clock: FrozenClock) -> None:
    defs.define_metric(rig.events, REVENUE)
    defs.define_gauge(rig.events, STOCK)
    rig.events.ingest(shop_events(60, seed=61))
    rig.poller().catch_up()
    secret = create_key(rig.events, "dashboard", ["read"])[1]
    client = create_app(dataclasses.replace(rig.settings, auth=True), clock=clock).test_client()
    facts = all_facts(rig.events)
    sales = [f for f in facts if f.type == "sale"]
    day_start = START.replace(hour=0)

    hourly: dict[datetime, list[float]] = defaultdict(list)
    for fact in sales:
        if START <= fact.occurred_at < START + timedelta(days=1) and fact.properties["store"] == "harbor":
            hourly[fact.occurred_at.replace(minute=0, second=0, microsecond=0)].append(fact.properties["amount"])
    data = graphql(
        client,
        secret,
        """{ series(metric: "revenue", resolution: HOUR, from: "2026-11-20T08:00:00Z", to: "2026-11-21T08:00:00Z",
                    filter: [{dimension: "store", value: "harbor"}]) {
               metric resolution watermark points { bucket value count partial } } }""",
    )["series"]
    points = data["points"]
    assert len(points) == 24 and not any(p["partial"] for p in points)
    for point in points:
        amounts = hourly.get(datetime.fromisoformat(point["bucket"]), [])
        assert point["count"] == len(amounts) and math.isclose(point["value"], sum(amounts))
    assert datetime.fromisoformat(data["watermark"]) == max(f.occurred_at for f in facts)

    by_category: dict[str, float] = defaultdict(float)
    for fact in sales:
        if day_start <= fact.occurred_at < day_start + timedelta(days=2):
            by_category[fact.properties["category"]] += fact.properties["amount"]
    rows = graphql(
        client,
        secret,
        """{ breakdown(metric: "revenue", dimension: "category", resolution: DAY,
                       from: "2026-11-20T00:00:00Z", to: "2026-11-22T00:00:00Z") { key value count } }""",
    )["breakdown"]
    assert [(r["key"], r["value"]) for r in rows] == sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0]))

    days = graphql(
        client,
        secret,
        '{ series(metric: "sale", resolution: DAY, from: "2026-11-20T00:00:00Z",'
        ' to: "2026-11-24T00:00:00Z") { points { count } } }',
    )["series"]["points"]
    assert [p["count"] for p in days] == [
        sum(1 for f in sales if f.occurred_at.date() == (day_start + timedelta(days=i)).date()) for i in range(4)
    ]

    latest: dict[str, tuple] = {}
    for fact in facts:
        if fact.type == "stock_level":
            candidate = (fact.occurred_at, fact.id, fact.properties["level"])
            latest[fact.properties["product"]] = max(latest.get(fact.properties["product"], candidate), candidate)
    readings = graphql(client, secret, '{ gauges(name: "stock") { key value eventId } }')["gauges"]
    assert {r["key"]: (r["value"], r["eventId"]) for r in readings} == {
        product: (float(level), event_id) for product, (_, event_id, level) in latest.items()
    }

    statuses = graphql(client, secret, "{ projections { name partition checkpoint definitionsVersion } }")
    (status,) = [s for s in statuses["projections"] if s["name"] == PROJECTION]
    (shard,) = rig.feed.shards()
    assert status == {
        "name": PROJECTION,
        "partition": shard.shard_id,
        "checkpoint": str(rig.views.checkpoint(PROJECTION, shard.shard_id).position),
        "definitionsVersion": 2,
    }
