"""What the DynamoDB event store does beyond the shared contract, against DynamoDB Local."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from dynamodb_local import free_port  # scripts/, put on sys.path by tests/conftest.py

from domain.errors import ConcurrencyError, StoreUnavailable, ValidationError
from domain.events import Event
from domain.settings import Settings
from storage.dynamodb import MAX_FACT_ID_BYTES, DynamoEventStore


def at(day: int, hour: int, minute: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, 0, micro, tzinfo=UTC)


def event(event_id: str, when: datetime, event_type: str = "sale", **props: object) -> Event:
    return Event(id=event_id, type=event_type, occurred_at=when, properties=props or {"amount": 1})


def test_facts_pages_skip_aggregate_items_without_coming_back_empty(dynamodb_store: DynamoEventStore) -> None:
    # 40 aggregate items: scans that evaluate only them return nothing after the filter.
    for first in range(0, 40, 10):
        dynamodb_store.append("dash-1", [event(f"agg-{first + i}", at(23, 1)) for i in range(10)], first)
    dynamodb_store.ingest([event(f"fact-{i}", at(23, 2)) for i in range(5)])

    pages: list[tuple[str, ...]] = []
    cursor = None
    while True:
        page = dynamodb_store.read_facts(cursor, limit=2)
        if not page.events:
            break
        pages.append(tuple(e.id for e in page.events))
        cursor = page.cursor
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(i for p in pages for i in p) == [f"fact-{i}" for i in range(5)]
    assert dynamodb_store.read_facts(cursor, limit=2).events == ()


def test_a_cursor_this_store_did_not_return_is_refused(dynamodb_store: DynamoEventStore) -> None:
    for bad in ("12", '{"pk": "F#01"}', "not json"):
        with pytest.raises(ValueError, match="cursor"):
            dynamodb_store.read_facts(bad)


def test_duplicates_are_found_across_many_batch_calls(dynamodb_store: DynamoEventStore) -> None:
    first = [event(f"e-{i:04d}", at(23, 3)) for i in range(260)]
    assert dynamodb_store.ingest(first).accepted == 260
    again = dynamodb_store.ingest([*first[::-1], event("new-1", at(23, 4)), first[0], event("new-2", at(23, 4))])
    assert again.duplicate == (True,) * 260 + (False, True, False)
    assert again.ids[-3:] == ("new-1", "e-0000", "new-2")


def test_ids_that_cannot_be_a_key_are_refused_by_field_before_anything_is_written(
    dynamodb_store: DynamoEventStore,
) -> None:
    too_long = "é" * (MAX_FACT_ID_BYTES // 2 + 1)
    with pytest.raises(ValidationError) as info:
        dynamodb_store.ingest([event("fine", at(23, 1)), event(too_long, at(23, 1)), event("", at(23, 1))])
    assert [(e.index, e.field) for e in info.value.errors] == [(1, "id"), (2, "id")]
    assert f"at most {MAX_FACT_ID_BYTES} bytes" in info.value.errors[0].message
    assert "empty" in info.value.errors[1].message
    assert dynamodb_store.read_facts().events == ()
    longest = "x" * MAX_FACT_ID_BYTES
    assert dynamodb_store.ingest([event(longest, at(23, 1))]).accepted == 1
    assert [e.id for e in dynamodb_store.read_facts().events] == [longest]


def test_an_append_larger_than_one_transaction_is_refused_whole(dynamodb_store: DynamoEventStore) -> None:
    with pytest.raises(ValueError, match="at most 100 events"):
        dynamodb_store.append("big", [event(f"b-{i}", at(23, 1)) for i in range(101)], 0)
    assert dynamodb_store.read_stream("big") == []
    assert dynamodb_store.append("big", [event(f"b-{i}", at(23, 1)) for i in range(100)], 0) == 100
    # Past version 0 the version check takes one of the transaction's 100 places.
    with pytest.raises(ValueError, match="at most 99 events"):
        dynamodb_store.append("big", [event(f"c-{i}", at(23, 1)) for i in range(100)], 100)
    assert len(dynamodb_store.read_stream("big")) == 100


def test_an_expected_version_ahead_of_the_stream_is_refused_with_the_actual_one(
    dynamodb_store: DynamoEventStore,
) -> None:
    dynamodb_store.append("rule-1", [event("r1", at(23, 1))], 0)
    with pytest.raises(ConcurrencyError) as info:
        dynamodb_store.append("rule-1", [event("r3", at(23, 1))], 2)
    assert (info.value.expected_version, info.value.actual_version) == (2, 1)
    with pytest.raises(ConcurrencyError) as info:
        dynamodb_store.append("rule-1", [], 0)
    assert info.value.actual_version == 1
    assert dynamodb_store.append("rule-1", [], 1) == 1
    assert [e.id for e in dynamodb_store.read_stream("rule-1")] == ["r1"]


def test_a_missing_table_says_how_to_create_it(dynamodb_settings: Settings) -> None:
    store = DynamoEventStore.from_settings(dynamodb_settings)
    try:
        with pytest.raises(StoreUnavailable, match="pulse tables create"):
            store.ping()
        with pytest.raises(StoreUnavailable, match="pulse tables create"):
            store.ingest([event("x", at(23, 1))])
    finally:
        store.close()


def test_an_unreachable_endpoint_is_store_unavailable(dynamodb_settings: Settings) -> None:
    nowhere = replace(dynamodb_settings, dynamodb_endpoint=f"http://127.0.0.1:{free_port()}")
    store = DynamoEventStore.from_settings(nowhere)
    try:
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1"):
            store.ping()
        with pytest.raises(StoreUnavailable):
            store.ingest([event("x", at(23, 1))])
        with pytest.raises(StoreUnavailable):
            store.append("s", [event("y", at(23, 1))], 0)
    finally:
        store.close()
