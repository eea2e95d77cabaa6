"""POST /v1/events through the real Flask stack, on both store backends."""

from __future__ import annotations

import gzip
import json
import logging
import resource
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient

from bootstrap import Pulse, drop_tables
from domain.clock import FrozenClock, now_utc
from domain.ports import EventStore
from domain.settings import Settings
from tests.api.conftest import Keys, all_facts, bearer, http_layer_only, sale
from tests.support import at_awkward_instants

JSON = {"Content-Type": "application/json"}


def post(client: FlaskClient, secret: str, payload: object, **kwargs: object):
    return client.post("/v1/events", json=payload, headers=bearer(secret), **kwargs)


def assert_error(response, status: int, *fragments: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body["message"], str) and body["message"]
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return body


# -- 202


def test_accepted_events_are_stored_with_every_field(client: FlaskClient, keys: Keys, store: EventStore) -> None:
    events = [sale(1), sale(2, id=None, properties={"amount": 5}), sale(3, source=None)]
    del events[2]["source"]
    del events[1]["id"]

    response = post(client, keys.ingest, {"events": events})

    assert response.status_code == 202
    body = response.get_json()
    assert body["accepted"] == 3 and body["duplicates"] == 0
    assert body["ids"][0] == "sale-1" and body["ids"][2] == "sale-3"
    generated = body["ids"][1]
    assert generated and generated not in ("sale-1", "sale-3")
    stored = {fact.id: fact for fact in all_facts(store)}
    assert set(stored) == set(body["ids"])
    first = stored["sale-1"]
    assert first.type == "sale"
    assert first.occurred_at == datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    assert first.source == "pos-store-12"
    assert dict(first.properties) == {"amount": 19.99, "product": "sku-1234", "gift": False, "coupon": None}
    assert dict(stored[generated].properties) == {"amount": 5}
    assert stored["sale-3"].source is None


@http_layer_only
def test_x_api_key_header_is_accepted(client: FlaskClient, keys: Keys) -> None:
    response = client.post("/v1/events", json={"events": [sale()]}, headers={"X-Api-Key": keys.ingest})
    assert response.status_code == 202


def test_admin_scope_may_ingest(client: FlaskClient, keys: Keys) -> None:
    assert post(client, keys.admin, {"events": [sale()]}).status_code == 202


def test_duplicates_across_requests_are_acknowledged_not_stored_twice(
    client: FlaskClient, keys: Keys, store: EventStore
) -> None:
    first = post(client, keys.ingest, {"events": [sale(1), sale(2)]})
    assert first.get_json() == {
        "accepted": 2,
        "duplicates": 0,
        "conflicts": 0,
        "conflictIds": [],
        "ids": ["sale-1", "sale-2"],
    }

    again = post(client, keys.ingest, {"events": [sale(2), sale(3), sale(3)]})

    assert again.status_code == 202
    assert again.get_json() == {
        "accepted": 1,
        "duplicates": 2,
        "conflicts": 0,
        "conflictIds": [],
        "ids": ["sale-2", "sale-3", "sale-3"],
    }
    assert sorted(fact.id for fact in all_facts(store)) == ["sale-1", "sale-2", "sale-3"]


def test_a_resend_with_another_payload_is_reported_as_a_conflict(
    client: FlaskClient, keys: Keys, store: EventStore
) -> None:
    assert post(client, keys.ingest, {"events": [sale(1), sale(2)]}).status_code == 202

    changed = sale(2, properties={"amount": 5})
    again = post(client, keys.ingest, {"events": [sale(1), changed, sale(3)]})

    assert again.status_code == 202
    assert again.get_json() == {
        "accepted": 1,
        "duplicates": 2,
        "conflicts": 1,
        "conflictIds": ["sale-2"],
        "ids": ["sale-1", "sale-2", "sale-3"],
    }
    stored = {fact.id: fact for fact in all_facts(store)}
    assert dict(stored["sale-2"].properties) == sale(2)["properties"]


def test_ndjson_one_event_per_line(client: FlaskClient, keys: Keys, store: EventStore) -> None:
    lines = [json.dumps(sale(1)), "", json.dumps(sale(2)) + "\r", "  "]
    response = client.post(
        "/v1/events",
        data="\n".join(lines) + "\n",
        headers={**bearer(keys.ingest), "Content-Type": "application/x-ndjson; charset=utf-8"},
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["ids"] == ["sale-1", "sale-2"]
    assert sorted(fact.id for fact in all_facts(store)) == ["sale-1", "sale-2"]


def test_a_gzipped_batch_of_1000_events(client: FlaskClient, keys: Keys, store: EventStore) -> None:
    body = gzip.compress(json.dumps({"events": [sale(i) for i in range(1000)]}).encode())
    response = client.post(
        "/v1/events",
        data=body,
        headers={**bearer(keys.ingest), "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["accepted"] == 1000
    assert len(all_facts(store)) == 1000


@http_layer_only
def test_concatenated_gzip_members_are_one_body(client: FlaskClient, keys: Keys) -> None:
    text = json.dumps({"events": [sale(1)]}).encode()
    body = gzip.compress(text[:10]) + gzip.compress(text[10:])
    response = client.post(
        "/v1/events",
        data=body,
        headers={**bearer(keys.ingest), "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 202


# -- 400


def test_malformed_json_is_400(client: FlaskClient, keys: Keys, store: EventStore) -> None:
    response = client.post(
        "/v1/events", data='{"events": [', headers={**bearer(keys.ingest), "Content-Type": "application/json"}
    )
    assert_error(response, 400, "not valid JSON")
    assert all_facts(store) == []


def test_malformed_ndjson_names_the_line(client: FlaskClient, keys: Keys, store: EventStore) -> None:
    data = json.dumps(sale(1)) + "\n{oops\n"
    response = client.post(
        "/v1/events", data=data, headers={**bearer(keys.ingest), "Content-Type": "application/x-ndjson"}
    )
    assert_error(response, 400, "line 2")
    assert all_facts(store) == []


@http_layer_only
def test_malformed_gzip_is_400(client: FlaskClient, keys: Keys) -> None:
    headers = {**bearer(keys.ingest), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    assert_error(client.post("/v1/events", data=b"not gzip at all", headers=headers), 400, "gzip")
    whole = gzip.compress(json.dumps({"events": [sale()]}).encode())
    assert_error(client.post("/v1/events", data=whole[:-12], headers=headers), 400, "gzip")


@http_layer_only
def test_json_python_cannot_read_is_400_not_500(client: FlaskClient, keys: Keys) -> None:
    deep = '{"events": ' + "[" * 100_000 + "]" * 100_000 + "}"
    huge_number = '{"events": [{"type": "sale", "occurredAt": "2026-11-23T12:00:00Z", "properties": {"n": 1%s}}]}'
    for data, fragment in ((deep, "too deeply"), (huge_number % ("0" * 5000), "digits")):
        for content_type in ("application/json", "application/x-ndjson"):
            response = client.post(
                "/v1/events", data=data, headers={**bearer(keys.ingest), "Content-Type": content_type}
            )
            assert_error(response, 400, fragment)


@http_layer_only
def test_unpaired_surrogate_escapes_are_422_not_500(client: FlaskClient, keys: Keys, store: EventStore) -> None:
    data = '{"events": [{"type": "sale", "occurredAt": "2026-11-23T12:00:00Z", "properties": {"name": "\\ud800"}}]}'
    response = client.post("/v1/events", data=data, headers={**bearer(keys.ingest), **JSON})
    body = assert_error(response, 422)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(0, "properties.name")]
    assert all_facts(store) == []


@http_layer_only
def test_invalid_utf8_is_400(client: FlaskClient, keys: Keys) -> None:
    response = client.post(
        "/v1/events",
        data=b'{"events": [{"type": "sale\xff"}]}',
        headers={**bearer(keys.ingest), "Content-Type": "application/json"},
    )
    assert_error(response, 400, "UTF-8")


# -- 401 / 403


def test_missing_key_is_401_with_a_challenge(client: FlaskClient, store: EventStore) -> None:
    response = client.post("/v1/events", json={"events": [sale()]})
    assert_error(response, 401, "missing API key")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="pulse"'
    assert all_facts(store) == []


def test_unknown_key_is_401(client: FlaskClient, keys: Keys) -> None:
    forged = keys.ingest[:-4] + "AAAA"
    for secret in (forged, "pulse_0123456789abcdef_nope", "not-a-pulse-key"):
        response = post(client, secret, {"events": [sale()]})
        assert_error(response, 401, "unknown API key")
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="pulse"'


def test_revoked_key_is_401(client: FlaskClient, keys: Keys, store: EventStore) -> None:
    response = post(client, keys.revoked, {"events": [sale()]})
    assert_error(response, 401, "revoked")
    assert all_facts(store) == []


@http_layer_only
def test_other_authorization_schemes_are_401(client: FlaskClient, keys: Keys) -> None:
    response = client.post("/v1/events", json={"events": [sale()]}, headers={"Authorization": f"Basic {keys.ingest}"})
    assert_error(response, 401, "Bearer")


def test_key_without_ingest_scope_is_403(client: FlaskClient, keys: Keys, store: EventStore) -> None:
    response = post(client, keys.read, {"events": [sale()]})
    assert_error(response, 403, "ingest")
    assert all_facts(store) == []


def test_auth_off_lets_anyone_ingest_and_says_so_loudly(
    settings: Settings, pulse: Pulse, caplog: pytest.LogCaptureFixture, clock: FrozenClock
) -> None:
    from dataclasses import replace

    from api.app import create_app

    with caplog.at_level(logging.WARNING):
        client = create_app(replace(settings, auth=False), pulse, clock).test_client()
    assert any(r.levelno == logging.WARNING and "AUTH IS OFF" in r.getMessage() for r in caplog.records)
    assert client.post("/v1/events", json={"events": [sale()]}).status_code == 202


def test_auth_is_on_unless_asked(
    settings: Settings, pulse: Pulse, caplog: pytest.LogCaptureFixture, clock: FrozenClock
) -> None:
    from api.app import create_app

    assert Settings.from_env({}).auth is True
    assert Settings.from_env({"PULSE_AUTH": "off"}).auth is False
    with caplog.at_level(logging.WARNING):
        client = create_app(settings, pulse, clock).test_client()
    assert not any("AUTH IS OFF" in r.getMessage() for r in caplog.records)
    assert client.post("/v1/events", json={"events": [sale()]}).status_code == 401


# -- 413


def test_1001_events_is_413_and_nothing_is_stored(client: FlaskClient, keys: Keys, store: EventStore) -> None:
    events = [sale(i) for i in range(1001)]
    assert_error(post(client, keys.ingest, {"events": events}), 413, "1001 events")
    ndjson = "\n".join(json.dumps(event) for event in events)
    response = client.post(
        "/v1/events", data=ndjson, headers={**bearer(keys.ingest), "Content-Type": "application/x-ndjson"}
    )
    assert_error(response, 413, "1001 events")
    assert all_facts(store) == []


@http_layer_only
def test_more_than_a_mebibyte_is_413(client: FlaskClient, keys: Keys, store: EventStore) -> None:
    padding = "x" * 1000
    events = [sale(i, properties={f"p{k}": padding for k in range(50)}) for i in range(25)]
    body = json.dumps({"events": events}).encode()
    assert len(body) > 1024 * 1024
    headers = {**bearer(keys.ingest), "Content-Type": "application/json"}
    assert_error(client.post("/v1/events", data=body, headers=headers), 413, "1048576 bytes")
    gzipped = {**headers, "Content-Encoding": "gzip"}
    assert_error(client.post("/v1/events", data=gzip.compress(body), headers=gzipped), 413, "1048576 bytes")
    assert all_facts(store) == []


@http_layer_only
def test_a_gzip_bomb_is_413_without_inflating_it(client: FlaskClient, keys: Keys) -> None:
    # 200 MiB of spaces (valid JSON whitespace) squeeze into ~200 KiB.
    bomb = gzip.compress(b"{" + b" " * (200 * 1024 * 1024) + b"}", compresslevel=9)
    headers = {**bearer(keys.ingest), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    tracemalloc.start()
    try:
        response = client.post("/v1/events", data=bomb, headers=headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_error(response, 413)
    # The body itself is in memory; what matters is that at most ~1 MiB was inflated.
    assert peak < len(bomb) * 3 + 8 * 1024 * 1024, peak


# -- 415


def test_wrong_content_type_is_415(client: FlaskClient, keys: Keys) -> None:
    data = json.dumps({"events": [sale()]})
    for content_type in ("text/plain", "application/xml", "application/json; charset=latin-1"):
        response = client.post("/v1/events", data=data, headers={**bearer(keys.ingest), "Content-Type": content_type})
        assert_error(response, 415, "application/json" if "charset" not in content_type else "UTF-8")
    no_type = client.post("/v1/events", data=data, headers=bearer(keys.ingest))
    assert_error(no_type, 415)


@http_layer_only
def test_charset_parameter_is_allowed(client: FlaskClient, keys: Keys) -> None:
    response = client.post(
        "/v1/events",
        data=json.dumps({"events": [sale()]}),
        headers={**bearer(keys.ingest), "Content-Type": "application/json; charset=UTF-8"},
    )
    assert response.status_code == 202


@http_layer_only
def test_unsupported_content_encoding_is_415(client: FlaskClient, keys: Keys) -> None:
    response = client.post(
        "/v1/events",
        data=b"...",
        headers={**bearer(keys.ingest), "Content-Type": "application/json", "Content-Encoding": "br"},
    )
    assert_error(response, 415, "gzip")


# -- 422


def test_every_error_of_every_event_is_listed_and_nothing_is_stored(
    client: FlaskClient, keys: Keys, store: EventStore, clock: FrozenClock
) -> None:
    future = (now_utc(clock) + timedelta(minutes=10)).isoformat()
    events = [
        sale(0),  # valid, yet not stored: the batch is all or nothing
        sale(1, type="Sale", properties={"amount": "x" * 1025, "cart": {"items": 2}, "tags": ["a"]}),
        sale(2, occurredAt="2026-11-23T12:00:00", source="s" * 129, colour="red"),
        sale(3, occurredAt=future, id="i" * 129, properties={f"k{i}": i for i in range(51)}),
        "not an object",
        {"occurredAt": "2026-11-23T12:00:00Z", "properties": {"flag": True, "n": 1.5}},
    ]
    response = post(client, keys.ingest, {"events": events})

    body = assert_error(response, 422)
    got = {(error["index"], error["field"]) for error in body["errors"]}
    assert got == {
        (1, "type"),
        (1, "properties.amount"),
        (1, "properties.cart"),
        (1, "properties.tags"),
        (2, "occurredAt"),
        (2, "source"),
        (2, "colour"),
        (3, "occurredAt"),
        (3, "id"),
        (3, "properties"),
        (4, ""),
        (5, "type"),
    }
    messages = {(error["index"], error["field"]): error["message"] for error in body["errors"]}
    assert "1024" in messages[(1, "properties.amount")]
    assert "flat" in messages[(1, "properties.cart")]
    assert "offset" in messages[(2, "occurredAt")]
    assert "unknown field" in messages[(2, "colour")]
    assert "future" in messages[(3, "occurredAt")]
    assert "at most 50" in messages[(3, "properties")]
    assert all_facts(store) == []


@http_layer_only
@at_awkward_instants
def test_occurred_at_may_be_at_most_max_future_seconds_past_the_apps_clock(
    client: FlaskClient, keys: Keys, store: EventStore, clock: FrozenClock
) -> None:
    limit = timedelta(seconds=300)  # Settings.max_future_seconds
    edge, beyond = now_utc(clock) + limit, now_utc(clock) + limit + timedelta(microseconds=1)
    assert post(client, keys.ingest, {"events": [sale(1, occurredAt=edge.isoformat())]}).status_code == 202
    body = assert_error(post(client, keys.ingest, {"events": [sale(2, occurredAt=beyond.isoformat())]}), 422)
    assert [(e["field"], "future" in e["message"]) for e in body["errors"]] == [("occurredAt", True)]
    ndjson = client.post(
        "/v1/events",
        data=json.dumps(sale(3, occurredAt=beyond.isoformat())),
        headers={**bearer(keys.ingest), "Content-Type": "application/x-ndjson"},
    )
    assert_error(ndjson, 422)
    clock.advance(1)
    assert post(client, keys.ingest, {"events": [sale(2, occurredAt=beyond.isoformat())]}).status_code == 202
    assert sorted(fact.id for fact in all_facts(store)) == ["sale-1", "sale-2"]


@http_layer_only
def test_non_finite_numbers_are_422(client: FlaskClient, keys: Keys) -> None:
    # Python's json reads NaN/Infinity; Pulse refuses them naming the property.
    data = (
        '{"events": [{"type": "sale", "occurredAt": "2026-11-23T12:00:00Z", "properties": {"a": NaN, "b": -Infinity}}]}'
    )
    response = client.post("/v1/events", data=data, headers={**bearer(keys.ingest), **JSON})
    body = assert_error(response, 422)
    assert {error["field"] for error in body["errors"]} == {"properties.a", "properties.b"}


@http_layer_only
def test_body_shape_errors_are_422(client: FlaskClient, keys: Keys) -> None:
    cases = {
        "[]": "",
        "{}": "events",
        '{"events": []}': "events",
        '{"events": {}}': "events",
        '{"events": [], "extra": 1}': "extra",
    }
    for data, field in cases.items():
        response = client.post("/v1/events", data=data, headers={**bearer(keys.ingest), **JSON})
        body = assert_error(response, 422)
        assert field in {error["field"] for error in body["errors"]}, (data, body)
        assert all(error["index"] is None for error in body["errors"])


@http_layer_only
def test_an_empty_ndjson_body_is_422(client: FlaskClient, keys: Keys) -> None:
    response = client.post(
        "/v1/events", data="\n\n", headers={**bearer(keys.ingest), "Content-Type": "application/x-ndjson"}
    )
    assert_error(response, 422, "no events")


@http_layer_only
def test_ndjson_errors_are_indexed_by_line_order(client: FlaskClient, keys: Keys) -> None:
    data = "\n".join([json.dumps(sale(0)), json.dumps(sale(1, type="BAD"))])
    response = client.post(
        "/v1/events", data=data, headers={**bearer(keys.ingest), "Content-Type": "application/x-ndjson"}
    )
    body = assert_error(response, 422)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "type")]


# -- 503


@contextmanager
def store_outage(settings: Settings) -> Iterator[None]:
    """A real outage of the backend: DynamoDB loses its table; SQLite's disk is full."""
    if settings.store == "dynamodb":
        drop_tables(settings)
        yield
        return
    # A file-size limit of 0 makes every write that extends a file fail (EFBIG), as a full
    # disk would; Python ignores SIGXFSZ, so the process lives on.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_store_unavailable_is_503_with_retry_after(
    client: FlaskClient, keys: Keys, store: EventStore, settings: Settings
) -> None:
    assert post(client, keys.ingest, {"events": [sale(0)]}).status_code == 202  # keys now cached
    with store_outage(settings):
        response = post(client, keys.ingest, {"events": [sale(i) for i in range(1, 50)]})
    assert_error(response, 503, "unavailable")
    assert int(response.headers["Retry-After"]) > 0


def test_a_resend_of_stored_events_is_acknowledged_during_an_outage_of_writes(
    client: FlaskClient, keys: Keys, settings: Settings
) -> None:
    """A client retrying a batch that was stored (its 202 lost on the way) learns so even when
    nothing can be written: duplicates need no write."""
    if settings.store == "dynamodb":
        pytest.skip("not on dynamodb: its outage here is a dropped table, which holds no events to resend")
    assert post(client, keys.ingest, {"events": [sale(0), sale(1)]}).status_code == 202
    with store_outage(settings):
        response = post(client, keys.ingest, {"events": [sale(0), sale(1)]})
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["duplicates"] == 2


@http_layer_only
def test_events_older_than_max_past_days_are_a_422_naming_the_field(client: FlaskClient, keys: Keys) -> None:
    # Default PULSE_MAX_PAST_DAYS: 3660 (about ten years).
    body = assert_error(post(client, keys.ingest, {"events": [sale(1, occurredAt="0001-01-01T00:00:00Z")]}), 422)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(0, "occurredAt")]
    assert "PULSE_MAX_PAST_DAYS" in body["errors"][0]["message"]
