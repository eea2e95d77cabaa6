"""Client mistakes over GraphQL are answered, not logged as server faults."""

from __future__ import annotations

import logging

import pytest
from flask.testing import FlaskClient

from tests.api.conftest import Keys, bearer, http_layer_only


@http_layer_only
@pytest.mark.parametrize(
    "query",
    [
        '{ series(metric: "no-such-metric", resolution: HOUR, last: 3) { metric } }',
        "{ noSuchField }",
        "{ health { status ",
    ],
)
def test_client_errors_leave_no_traceback_in_the_log(
    client: FlaskClient, keys: Keys, caplog: pytest.LogCaptureFixture, query: str
) -> None:
    with caplog.at_level(logging.ERROR):
        response = client.post("/graphql", json={"query": query}, headers=bearer(keys.read))
    assert response.json["errors"], response.json
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@http_layer_only
def test_an_unauthenticated_query_is_an_error_not_a_log_entry(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = client.post("/graphql", json={"query": "{ metrics { name } }"})
    assert response.json["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@http_layer_only
def test_absurdly_nested_json_is_a_400(client: FlaskClient, keys: Keys) -> None:
    body = '{"query": "{ health { status } }", "variables": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    response = client.post("/graphql", data=body, content_type="application/json", headers=bearer(keys.read))
    assert response.status_code == 400
    assert "JSON" in response.json["message"]


@http_layer_only
def test_a_body_over_a_megabyte_is_a_413(client: FlaskClient, keys: Keys) -> None:
    padding = "x" * (1024 * 1024)
    response = client.post(
        "/graphql",
        json={"query": "{ health { status } }", "variables": {"padding": padding}},
        headers=bearer(keys.read),
    )
    assert response.status_code == 413
    assert response.json["message"]


def _define_revenue(client: FlaskClient, keys: Keys) -> None:
    response = client.post(
        "/graphql",
        json={"query": 'mutation { defineMetric(input: {name: "revenue", eventType: "sale"}) { name } }'},
        headers=bearer(keys.admin),
    )
    assert response.json["data"]["defineMetric"]["name"] == "revenue", response.json


@http_layer_only
@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ('resolution: DAY, from: "9999-12-30T00:00:00Z", to: "9999-12-31T12:00:00Z"', "to"),
        ('resolution: DAY, to: "9999-12-31T23:00:00Z", last: 3', "to"),
        ('resolution: DAY, from: "9999-12-30T00:00:00Z"', "from"),
        ('resolution: DAY, to: "0001-01-02T00:00:00Z", last: 3', "to"),
        (
            'resolution: DAY, from: "0001-01-02T00:00:00Z", to: "0001-01-05T00:00:00Z",'
            " compareTo: SAME_PERIOD_LAST_YEAR",
            "compareTo",
        ),
        (
            'resolution: MINUTE, from: "0001-01-01T00:00:00Z", to: "0001-01-01T00:05:00Z", compareTo: PREVIOUS_PERIOD',
            "compareTo",
        ),
    ],
)
def test_ranges_past_the_calendar_are_bad_input_naming_the_argument(
    client: FlaskClient, keys: Keys, caplog: pytest.LogCaptureFixture, arguments: str, field: str
) -> None:
    _define_revenue(client, keys)
    with caplog.at_level(logging.ERROR):
        response = client.post(
            "/graphql",
            json={"query": f'{{ series(metric: "revenue", {arguments}) {{ points {{ bucket }} }} }}'},
            headers=bearer(keys.read),
        )
    (error,) = response.json["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert [e["field"] for e in error["extensions"]["errors"]] == [field]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@http_layer_only
def test_invalid_utf8_is_a_400(client: FlaskClient, keys: Keys) -> None:
    body = b'{"query": "{ health { status } }", "variables": {"x": "\xff"}}'
    response = client.post("/graphql", data=body, content_type="application/json", headers=bearer(keys.read))
    assert response.status_code == 400
    assert "UTF-8" in response.json["message"]


@http_layer_only
def test_a_huge_integer_variable_is_a_400_naming_it(client: FlaskClient, keys: Keys) -> None:
    body = '{"query": "query($n: Int) { health { status } }", "variables": {"n": ' + "9" * 5000 + "}}"
    response = client.post("/graphql", data=body, content_type="application/json", headers=bearer(keys.read))
    assert response.status_code == 400
    assert response.json["message"].startswith("variables.n: an integer of 5000 digits")
    assert "set_int_max_str_digits" not in response.json["message"]


@http_layer_only
def test_a_huge_integer_literal_is_refused_naming_the_argument(client: FlaskClient, keys: Keys) -> None:
    query = '{ series(metric: "revenue", resolution: DAY, last: ' + "9" * 5000 + ") { metric } }"
    response = client.post("/graphql", json={"query": query}, headers=bearer(keys.read))
    assert response.status_code == 400
    (error,) = response.json["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "last" in error["message"] and "5000 digits" in error["message"]
    assert "set_int_max_str_digits" not in error["message"]


@http_layer_only
@pytest.mark.parametrize(
    ("query", "code"),
    [("{ noSuchField }", "GRAPHQL_VALIDATION_FAILED"), ("{ health { status ", "GRAPHQL_PARSE_FAILED")],
)
def test_documents_that_do_not_parse_or_validate_are_400_with_a_code(
    client: FlaskClient, keys: Keys, query: str, code: str
) -> None:
    response = client.post("/graphql", json={"query": query}, headers=bearer(keys.read))
    assert response.status_code == 400
    assert [e["extensions"]["code"] for e in response.json["errors"]] == [code]
