"""What one GraphQL request may cost, and who may introspect (api/graphql_limits.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask.testing import FlaskClient
from graphql import get_introspection_query

from api.app import create_app
from bootstrap import Pulse
from domain.settings import Settings
from tests.api.conftest import Keys, bearer, http_layer_only

SERIES_FIELDS = "points { bucket value count partial } watermark"


def _post(client: FlaskClient, secret: str | None, query: str, variables: dict | None = None):
    headers = bearer(secret) if secret else {}
    return client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)


def _refusal(response, limit: str) -> dict:
    assert response.status_code == 400, response.get_data(as_text=True)
    (error,) = response.json["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY", error
    assert error["extensions"]["limit"] == limit
    assert limit in error["message"]
    return error


@http_layer_only
def test_500_aliases_of_a_10000_minute_series_are_refused_before_running(client: FlaskClient, keys: Keys) -> None:
    query = (
        "{ "
        + " ".join(
            f'a{i}: series(metric: "sale", resolution: MINUTE, last: 10000) {{ {SERIES_FIELDS} }}' for i in range(500)
        )
        + " }"
    )
    _refusal(_post(client, keys.read, query), "PULSE_MAX_QUERY_POINTS")


@http_layer_only
def test_a_30_chart_dashboard_fits(client: FlaskClient, keys: Keys) -> None:
    client.post(
        "/graphql",
        json={"query": 'mutation { defineMetric(input: {name: "revenue", eventType: "sale"}) { name } }'},
        headers=bearer(keys.admin),
    )
    charts = [
        f'c{i}: series(metric: "revenue", resolution: MINUTE, last: {100 + 50 * i}, compareTo: PREVIOUS_PERIOD)'
        f" {{ {SERIES_FIELDS} previous {{ bucket value }} }}"
        for i in range(30)
    ]
    response = _post(client, keys.read, "{ " + " ".join(charts) + " }")
    assert response.status_code == 200
    assert "errors" not in response.json, response.json["errors"][0]
    assert len(response.json["data"]["c29"]["points"]) == 1550


@http_layer_only
def test_variables_and_ranges_count_too(client: FlaskClient, keys: Keys) -> None:
    query = (
        "query($n: Int) { "
        + " ".join(f'a{i}: series(metric: "sale", resolution: MINUTE, last: $n) {{ metric }}' for i in range(20))
        + " }"
    )
    _refusal(_post(client, keys.read, query, {"n": 10000}), "PULSE_MAX_QUERY_POINTS")
    ranged = (
        "{ "
        + " ".join(
            f'a{i}: series(metric: "sale", resolution: MINUTE, from: "2026-01-01T00:00:00Z",'
            f' to: "2026-01-07T00:00:00Z") {{ metric }}'
            for i in range(20)
        )
        + " }"
    )
    _refusal(_post(client, keys.read, ranged), "PULSE_MAX_QUERY_POINTS")


@http_layer_only
def test_a_subscription_is_held_to_the_same_budget(client: FlaskClient, keys: Keys) -> None:
    query = 'subscription { seriesUpdated(metric: "sale", resolution: MINUTE, last: 10000) { metric } }'
    app = client.application
    pulse = app.extensions["pulse"]
    small = create_app(replace(pulse.settings, max_query_points=5000), pulse)
    response = small.test_client().post(
        "/graphql",
        json={"query": query},
        headers={**bearer(keys.read), "Accept": "text/event-stream"},
    )
    assert response.status_code < 500
    body = response.get_data(as_text=True)
    assert "QUERY_TOO_COSTLY" in body and "PULSE_MAX_QUERY_POINTS" in body


@http_layer_only
def test_a_10000_item_filter_is_refused(client: FlaskClient, keys: Keys) -> None:
    query = 'query($f: [DimensionFilter!]) { series(metric: "sale", resolution: HOUR, filter: $f) { metric } }'
    filters = [{"dimension": "store", "value": str(i)} for i in range(10_000)]
    error = _refusal(_post(client, keys.read, query, {"f": filters}), "PULSE_MAX_LIST_ITEMS")
    assert error["extensions"]["argument"] == "filter"


@http_layer_only
def test_depth_and_field_counts_are_bounded(client: FlaskClient, keys: Keys) -> None:
    fields = "{ " + " ".join(f"h{i}: health {{ status }}" for i in range(1100)) + " }"
    _refusal(_post(client, keys.read, fields), "PULSE_MAX_QUERY_FIELDS")
    small = create_app(replace(client.application.extensions["pulse"].settings, max_query_depth=2))
    deep = '{ series(metric: "sale", resolution: DAY) { points { bucket } } }'
    _refusal(_post(small.test_client(), keys.read, deep), "PULSE_MAX_QUERY_DEPTH")
    # Introspection's type references nest deeper than data (GraphiQL's query): not refused.
    introspection = _post(client, keys.read, get_introspection_query())
    assert introspection.status_code == 200 and "errors" not in introspection.json


@http_layer_only
def test_fragments_spreading_each_other_are_refused_without_expanding_them_all(client: FlaskClient, keys: Keys) -> None:
    fragments = ["fragment F0 on Query { health { status } }"]
    fragments += [f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 40)]
    query = "{ ...F39 } " + " ".join(fragments)
    _refusal(_post(client, keys.read, query), "PULSE_MAX_QUERY_FIELDS")


INTROSPECTION = "{ __schema { queryType { name } } }"


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("mode", "caller", "allowed"),
    [
        ("auto", "read", True),
        ("auto", "ingest", False),
        ("auto", None, False),
        ("on", None, True),
        ("off", "admin", False),
    ],
)
def test_introspection_follows_the_setting(
    settings: Settings, pulse: Pulse, keys: Keys, mode: str, caller: str | None, allowed: bool
) -> None:
    client = create_app(replace(settings, introspection=mode), pulse).test_client()
    response = _post(client, getattr(keys, caller) if caller else None, INTROSPECTION)
    if allowed:
        assert response.json["data"]["__schema"]["queryType"]["name"] == "Query"
    else:
        assert response.status_code == 400
        (error,) = response.json["errors"]
        assert error["extensions"]["code"] == "INTROSPECTION_DISABLED"
        assert "PULSE_INTROSPECTION" in error["message"]
    # __typename is not introspection of the schema: always allowed.
    assert _post(client, None, "{ __typename }").json["data"] == {"__typename": "Query"}
