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
