"""GraphQL ingestEvents: the REST endpoint's rules and answers, as a mutation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient

from domain.clock import FrozenClock, now_utc
from domain.ports import EventStore
from tests.api.conftest import Keys, all_facts, bearer, http_layer_only, sale

INGEST = """
mutation Ingest($events: [EventInput!]!) {
  ingestEvents(events: $events) { accepted duplicates conflicts conflictIds ids }
}
"""


def ingest(client: FlaskClient, events: list[Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": INGEST, "variables": {"events": events}}, headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_ingest_events_stores_and_reports_duplicates(client: FlaskClient, keys: Keys, store: EventStore) -> None:
    first = ingest(client, [sale(1), sale(2)], bearer(keys.ingest))
    assert first["data"]["ingestEvents"] == {
        "accepted": 2,
        "duplicates": 0,
        "conflicts": 0,
        "conflictIds": [],
        "ids": ["sale-1", "sale-2"],
    }

    again = ingest(client, [sale(2), sale(3), sale(1, type="refund")], bearer(keys.ingest))
    assert again["data"]["ingestEvents"] == {
        "accepted": 1,
        "duplicates": 2,
        "conflicts": 1,
        "conflictIds": ["sale-1"],
        "ids": ["sale-2", "sale-3", "sale-1"],
    }
    stored = {fact.id: fact for fact in all_facts(store)}
    assert sorted(stored) == ["sale-1", "sale-2", "sale-3"]
    assert dict(stored["sale-1"].properties) == sale(1)["properties"]
    assert stored["sale-1"].type == "sale"  # the conflicting resend changed nothing


def test_invalid_input_is_one_bad_user_input_error_with_the_rest_field_paths(
    client: FlaskClient, keys: Keys, store: EventStore
) -> None:
    events = [
        sale(0),
        sale(1, type="Sale", properties={"amount": "x" * 1025, "cart": {"items": 2}}),
        sale(2, source="s" * 129, id="i" * 129, properties={"n": [1]}),
        sale(3, occurredAt="2026-11-23T12:00:00"),  # no offset: GraphQL's DateTime parses it, Pulse refuses
    ]
    rest = client.post("/v1/events", json={"events": events}, headers=bearer(keys.ingest)).get_json()

    result = ingest(client, events, bearer(keys.ingest))

    assert result["data"] is None
    (error,) = result["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["errors"] == rest["errors"]
    assert {(e["index"], e["field"]) for e in error["extensions"]["errors"]} == {
        (1, "type"),
        (1, "properties.amount"),
        (1, "properties.cart"),
        (2, "source"),
        (2, "id"),
        (2, "properties.n"),
        (3, "occurredAt"),
    }
    assert all_facts(store) == []


def test_more_than_1000_events_is_bad_user_input(client: FlaskClient, keys: Keys, store: EventStore) -> None:
    result = ingest(client, [sale(i) for i in range(1001)], bearer(keys.ingest))
    (error,) = result["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "at most 1000" in error["extensions"]["errors"][0]["message"]
    assert all_facts(store) == []


def test_missing_unknown_and_revoked_keys_are_unauthenticated(
    client: FlaskClient, keys: Keys, store: EventStore
) -> None:
    for headers in ({}, bearer("pulse_0123456789abcdef_nope"), bearer(keys.revoked)):
        (error,) = ingest(client, [sale()], headers)["errors"]
        assert error["extensions"]["code"] == "UNAUTHENTICATED", error
    assert all_facts(store) == []


def test_a_key_without_the_ingest_scope_is_forbidden(client: FlaskClient, keys: Keys, store: EventStore) -> None:
    (error,) = ingest(client, [sale()], bearer(keys.read))["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert "ingest" in error["message"]
    assert all_facts(store) == []


@http_layer_only
def test_the_future_bound_is_measured_from_the_apps_clock(
    client: FlaskClient, keys: Keys, store: EventStore, clock: FrozenClock
) -> None:
    beyond = (now_utc(clock) + timedelta(seconds=301)).isoformat()
    (error,) = ingest(client, [sale(1, occurredAt=beyond)], bearer(keys.ingest))["errors"]
    assert error["extensions"]["errors"][0]["field"] == "occurredAt"
    clock.advance(1)
    assert ingest(client, [sale(1, occurredAt=beyond)], bearer(keys.ingest))["data"]["ingestEvents"]["accepted"] == 1
