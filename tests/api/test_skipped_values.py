"""Skipped values over GraphQL and GET /metrics: a metric of a value counts the facts whose
value property was not a number instead of dropping them silently, and a definition may
opt in to parsing plain decimal strings (issue 13, "no silent loss")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient

from bootstrap import Pulse, WorkerOptions
from domain.clock import FrozenClock, now_utc
from domain.events import Event
from tests.api.conftest import Keys, bearer, http_layer_only
from tests.api.test_metrics_endpoint import scrape, value

REVENUE = """
mutation($parse: Boolean!) { %s(input: {
  name: "revenue", eventType: "sale", aggregation: SUM, valueProperty: "amount", parseNumericStrings: $parse
}) { name parseNumericStrings } }
"""
METRICS = "{ metrics { name parseNumericStrings skippedValues } }"
TOTAL = '{ series(metric: "revenue", resolution: DAY, last: 1) { points { value count } } }'


def gql(client: FlaskClient, secret: str, query: str, **variables: Any) -> dict[str, Any]:
    answer = client.post("/graphql", json={"query": query, "variables": variables}, headers=bearer(secret)).json
    assert "errors" not in answer, answer
    return answer["data"]


def sales(pulse: Pulse, clock: FrozenClock, *amounts: object) -> None:
    at = now_utc(clock) - timedelta(seconds=5)
    pulse.store.ingest(
        [Event(type="sale", occurred_at=at, properties={"amount": a} if a is not None else {}) for a in amounts]
    )
    pulse.worker(WorkerOptions(clock=clock)).catch_up()


def metrics(client: FlaskClient, keys: Keys) -> dict[str, dict]:
    return {m["name"]: m for m in gql(client, keys.read, METRICS)["metrics"]}


@http_layer_only
def test_a_string_amount_is_counted_as_skipped_and_summed_once_the_metric_parses_strings(
    client: FlaskClient, pulse: Pulse, keys: Keys, clock: FrozenClock
) -> None:
    assert gql(client, keys.admin, REVENUE % "defineMetric", parse=False)["defineMetric"] == {
        "name": "revenue",
        "parseNumericStrings": False,
    }
    sales(pulse, clock, 10, "12.50", "twelve", True, {"eur": 3}, None)

    shown = metrics(client, keys)
    # Four present values were not numbers; the missing one is not a skipped value.
    assert shown["revenue"] == {"name": "revenue", "parseNumericStrings": False, "skippedValues": 4}
    assert shown["sale"]["skippedValues"] == 0  # the built-in count has no value to skip
    assert gql(client, keys.read, TOTAL)["series"]["points"] == [{"value": 10.0, "count": 1}]
    assert value(scrape(client), "pulse_metric_values_skipped", metric="revenue") == 4

    # Opting in recomputes the metric: "12.50" is now summed, the others stay skipped.
    assert gql(client, keys.admin, REVENUE % "updateMetric", parse=True)["updateMetric"]["parseNumericStrings"]
    pulse.worker(WorkerOptions(clock=clock)).catch_up()
    assert metrics(client, keys)["revenue"]["skippedValues"] == 3
    assert gql(client, keys.read, TOTAL)["series"]["points"] == [{"value": 22.5, "count": 2}]
    assert value(scrape(client), "pulse_metric_values_skipped", metric="revenue") == 3


@http_layer_only
def test_parse_numeric_strings_is_refused_on_a_count(client: FlaskClient, keys: Keys) -> None:
    answer = client.post(
        "/graphql",
        json={
            "query": 'mutation { defineMetric(input: {name: "n", eventType: "sale", parseNumericStrings: true})'
            " { name } }"
        },
        headers=bearer(keys.admin),
    ).json
    (error,) = answer["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "parseNumericStrings" in error["message"]
