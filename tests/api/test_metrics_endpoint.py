"""GET /metrics: Prometheus text that prometheus_client's parser reads, with the ingest
counts by outcome, latency per route rule, and the projections' lag read at scrape time
(so it moves when the worker stops and ingest goes on); its access setting; request ids."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.logs import log_handler
from bootstrap import Pulse, WorkerOptions
from domain.clock import FrozenClock, now_utc
from domain.settings import Settings
from tests.api.conftest import Keys, bearer, http_layer_only


def scrape(client: FlaskClient) -> dict[str, dict[tuple, float]]:
    """name → {labels: value} of every sample, parsed by prometheus_client."""
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.content_type.startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def events(clock: FrozenClock, *ids: str) -> dict:
    at = (now_utc(clock) - timedelta(minutes=1)).isoformat()
    return {"events": [{"id": i, "type": "sale", "occurredAt": at, "properties": {"amount": 5}} for i in ids]}


@http_layer_only
def test_ingest_outcomes_and_latency_per_route(client: FlaskClient, keys: Keys, clock: FrozenClock) -> None:
    before = scrape(client)
    assert client.post("/v1/events", json=events(clock, "a", "b"), headers=bearer(keys.ingest)).status_code == 202
    assert client.post("/v1/events", json=events(clock, "b", "c"), headers=bearer(keys.ingest)).status_code == 202
    bad = {"events": [{"id": "x", "type": "sale", "occurredAt": "yesterday-ish"}]}
    assert client.post("/v1/events", json=bad, headers=bearer(keys.ingest)).status_code == 422
    assert client.post("/v1/events", json=events(clock, "d"), headers=bearer(keys.read)).status_code == 403
    client.get("/no/such/path")
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("pulse_events_accepted_total") == 3
    assert delta("pulse_events_duplicates_total") == 1
    assert delta("pulse_events_rejected_total", reason="invalid") == 1
    assert delta("pulse_events_rejected_total", reason="forbidden") == 1
    routes = {dict(labels)["route"] for labels in after["pulse_http_request_duration_seconds_count"]}
    assert {"/v1/events", "/metrics", "unmatched"} <= routes and "/no/such/path" not in routes
    assert delta("pulse_http_request_duration_seconds_count", route="/v1/events", method="POST", status="202") == 2


@http_layer_only
def test_lag_moves_when_the_worker_stops_and_ingest_goes_on(
    client: FlaskClient, pulse: Pulse, keys: Keys, clock: FrozenClock
) -> None:
    worker = pulse.worker(WorkerOptions())
    client.post("/v1/events", json=events(clock, "a", "b"), headers=bearer(keys.ingest))
    worker.catch_up()
    caught_up = scrape(client)
    assert value(caught_up, "pulse_projection_lag_events", projection="metrics", partition="") == 0
    assert value(caught_up, "pulse_projection_lag_seconds", projection="metrics", partition="") == 0
    assert value(caught_up, "pulse_store_up") == 1

    # The worker is stopped (not run) while ingest goes on.
    client.post("/v1/events", json=events(clock, "c", "d", "e"), headers=bearer(keys.ingest))
    behind = scrape(client)
    assert value(behind, "pulse_projection_lag_events", projection="metrics", partition="") == 3
    assert value(behind, "pulse_projection_lag_events", projection="recent-events", partition="") == 3
    assert value(behind, "pulse_projection_lag_seconds", projection="metrics", partition="") > 0
    assert value(behind, "pulse_projection_parked_events", projection="metrics") == 0

    worker.catch_up()
    assert value(scrape(client), "pulse_projection_lag_events", projection="metrics", partition="") == 0


def app_with(app: Flask, pulse: Pulse, clock: FrozenClock, access: str) -> FlaskClient:
    settings = dataclasses.replace(pulse.settings, metrics_access=access)
    return create_app(settings, pulse, clock).test_client()


REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


@http_layer_only
@pytest.mark.parametrize(
    ("access", "remote_without_key", "local_without_key"),
    [("local", 401, 200), ("key", 401, 401), ("open", 200, 200)],
)
def test_access_setting(
    app: Flask,
    pulse: Pulse,
    clock: FrozenClock,
    keys: Keys,
    access: str,
    remote_without_key: int,
    local_without_key: int,
) -> None:
    client = app_with(app, pulse, clock, access)
    assert client.get("/metrics", environ_base=REMOTE).status_code == remote_without_key
    assert client.get("/metrics").status_code == local_without_key  # the test client calls from 127.0.0.1
    assert client.get("/metrics", environ_base=REMOTE, headers=bearer(keys.read)).status_code == 200
    assert client.get("/metrics", environ_base=REMOTE, headers=bearer(keys.admin)).status_code == 200
    if access != "open":
        assert client.get("/metrics", environ_base=REMOTE, headers=bearer(keys.ingest)).status_code == 403


def test_an_unknown_access_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="PULSE_METRICS_ACCESS"):
        Settings(metrics_access="public")
    with pytest.raises(ValueError, match="PULSE_LOG_FORMAT"):
        Settings(log_format="xml")


@http_layer_only
def test_every_json_log_line_of_a_request_carries_its_request_id(app: Flask) -> None:
    stream = io.StringIO()
    handler = log_handler("json", "pulse-web", stream)
    logging.getLogger().addHandler(handler)
    app.add_url_rule(
        "/_log_twice",
        "log_twice",
        lambda: (logging.getLogger("pulse.x").warning("one"), logging.getLogger("y").error("two"), "ok")[2],
    )
    try:
        client = app.test_client()
        sent = client.get("/_log_twice", headers={"X-Request-Id": "req-42"})
        made = client.get("/_log_twice")
        logging.getLogger("z").warning("outside")
    finally:
        logging.getLogger().removeHandler(handler)
    assert sent.headers["X-Request-Id"] == "req-42"
    generated = made.headers["X-Request-Id"]
    assert generated and generated != "req-42"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [(line["message"], line.get("request_id")) for line in lines if line["logger"] in ("pulse.x", "y", "z")]
    assert mine == [("one", "req-42"), ("two", "req-42"), ("one", generated), ("two", generated), ("outside", None)]
    assert {line["level"] for line in lines} >= {"WARNING", "ERROR"} and all("time" in line for line in lines)


@http_layer_only
def test_a_request_id_that_is_not_sane_is_replaced(client: FlaskClient) -> None:
    answer = client.get("/healthz", headers={"X-Request-Id": "x" * 500})
    assert answer.headers["X-Request-Id"] != "x" * 500 and len(answer.headers["X-Request-Id"]) == 32
