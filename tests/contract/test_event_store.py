"""The event-store contract: every adapter passes these, unchanged (the in-memory fake too)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bootstrap import bootstrap, drop_tables
from domain.errors import ConcurrencyError, EventTooLarge
from domain.events import Event
from domain.ports import EventStore
from domain.settings import Settings
from tests.support import all_facts, in_threads, real_now


@pytest.fixture
def store(settings: Settings) -> Iterator[EventStore]:
    pulse = bootstrap(settings, create=True)
    yield pulse.store
    pulse.close()
    drop_tables(settings)


def sale(event_id: str, **props: object) -> Event:
    return Event(
        id=event_id,
        type="sale",
        occurred_at=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
        properties=props or {"amount": 1},
    )


def test_store_satisfies_the_port(store: EventStore) -> None:
    assert isinstance(store, EventStore)
    store.ping()


def test_every_field_round_trips(store: EventStore) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    sent = Event(
        id="évènement-1 ☕",
        type="sale",
        occurred_at=datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=india),
        source="pos-store-12 🏪",
        properties={
            "product": "Crème brûlée 🍮",
            "empty": "",
            "big": 2**63 + 1,
            "negative": -(2**62),
            "huge": 1.7976931348623157e308,
            "tiny": 5e-324,
            "price": 19.99,
            "zero": 0,
            "gift": True,
            "coupon": None,
            "note": "x" * 1024,
        },
    )
    before = real_now()
    result = store.ingest([sent])
    assert result.ids == (sent.id,)
    assert result.accepted == 1 and result.duplicates == 0

    (got,) = all_facts(store)
    assert got.event == sent
    assert got.occurred_at == datetime(2026, 3, 1, 4, 0, 15, 123456, tzinfo=UTC)
    assert got.occurred_at.utcoffset() == timedelta(0)
    assert type(got.properties["big"]) is int and got.properties["big"] == 2**63 + 1
    assert type(got.properties["price"]) is float and got.properties["price"] == 19.99
    assert type(got.properties["gift"]) is bool
    assert got.properties["coupon"] is None
    assert got.version is None
    assert before - timedelta(seconds=5) <= got.received_at <= real_now() + timedelta(seconds=5)


def test_source_is_optional(store: EventStore) -> None:
    store.ingest([sale("no-source")])
    (got,) = all_facts(store)
    assert got.source is None


def test_duplicate_within_a_batch_is_stored_once(store: EventStore) -> None:
    result = store.ingest([sale("a"), sale("b"), sale("a", amount=99)])
    assert result.ids == ("a", "b", "a")
    assert result.duplicate == (False, False, True)
    assert (result.accepted, result.duplicates) == (2, 1)
    facts = {f.id: f for f in all_facts(store)}
    assert sorted(facts) == ["a", "b"]
    assert facts["a"].properties == {"amount": 1}


def test_duplicate_across_batches_keeps_the_first(store: EventStore) -> None:
    store.ingest([sale("a"), sale("b")])
    later = Event(
        id="b",
        type="sale",
        occurred_at=datetime(2026, 11, 24, tzinfo=UTC),
        properties={"amount": 500},
    )
    result = store.ingest([later, sale("c")])
    assert result.duplicate == (True, False)
    facts = {f.id: f for f in all_facts(store)}
    assert sorted(facts) == ["a", "b", "c"]
    assert facts["b"].properties == {"amount": 1}
    assert facts["b"].occurred_at == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_a_resend_with_another_payload_is_a_conflict_and_the_stored_event_stands(store: EventStore) -> None:
    first = Event(
        id="order-1",
        type="sale",
        occurred_at=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
        properties={"amount": 1, "product": "sku-1"},
        source="pos-12",
    )
    store.ingest([first, sale("x")])
    paris = timezone(timedelta(hours=1))
    same = [  # the same payload, written differently: plain duplicates
        first,
        Event(
            id="order-1",
            type="sale",
            occurred_at=datetime(2026, 11, 23, 13, 0, tzinfo=paris),  # the same instant
            properties={"product": "sku-1", "amount": 1.0},  # other key order, 1.0 == 1
            source="pos-12",
        ),
    ]
    differing = [
        replace(first, type="refund"),
        replace(first, occurred_at=first.occurred_at + timedelta(microseconds=1)),
        replace(first, properties={"amount": 2, "product": "sku-1"}),
        replace(first, properties={"amount": 1}),
        replace(first, source="pos-13"),
        replace(first, source=None),
    ]
    # A repeat within the batch that differs from its first occurrence conflicts too.
    result = store.ingest([*same, *differing, sale("y"), sale("y", amount=7), sale("x")])

    assert result.duplicate == (True,) * 8 + (False, True, True)
    assert (result.accepted, result.duplicates, result.conflicts) == (1, 10, 7)
    assert result.conflict_ids == ("order-1",) * 6 + ("y",)
    facts = {fact.id: fact for fact in all_facts(store)}
    assert sorted(facts) == ["order-1", "x", "y"]
    assert facts["order-1"].event == first
    assert facts["y"].properties == {"amount": 1}


def test_a_batch_of_5000_is_stored_whole(store: EventStore) -> None:
    events = [sale(f"bulk-{i:05d}", amount=i) for i in range(5000)]
    result = store.ingest(events)
    assert result.accepted == 5000 and result.duplicates == 0
    facts = all_facts(store)
    assert len(facts) == 5000
    assert {f.id for f in facts} == {e.id for e in events}
    assert sum(f.properties["amount"] for f in facts) == sum(range(5000))


def test_reading_facts_resumes_after_the_cursor(store: EventStore) -> None:
    store.ingest([sale(f"p-{i}") for i in range(25)])
    first = store.read_facts(None, limit=10)
    assert len(first.events) == 10
    rest = []
    cursor = first.cursor
    while True:
        page = store.read_facts(cursor, limit=10)
        if not page.events:
            break
        rest.extend(page.events)
        cursor = page.cursor
    ids = [e.id for e in first.events] + [e.id for e in rest]
    assert len(ids) == 25 and len(set(ids)) == 25
    assert store.read_facts(cursor, limit=10).events == ()


def test_an_oversized_event_rejects_the_whole_batch(store: EventStore) -> None:
    huge = sale("huge", blob="x" * (store.max_event_bytes + 1))
    with pytest.raises(EventTooLarge) as info:
        store.ingest([sale("fine"), huge])
    assert info.value.event_id == "huge"
    assert info.value.errors[0].index == 1
    assert "limit" in str(info.value)
    assert all_facts(store) == []


def test_an_oversized_aggregate_event_is_not_appended(store: EventStore) -> None:
    huge = Event(type="note", occurred_at=real_now(), properties={"x": "y" * 500_000})
    with pytest.raises(EventTooLarge):
        store.append("notes-1", [Event(type="note", occurred_at=real_now()), huge], 0)
    assert store.read_stream("notes-1") == []


def aggregate_event(kind: str, n: int) -> Event:
    return Event(type=kind, occurred_at=real_now(), properties={"n": n, "nested": {"k": [n]}})


def test_stream_events_keep_their_order_and_versions(store: EventStore) -> None:
    assert store.append("metric-revenue", [aggregate_event("defined", i) for i in range(3)], 0) == 3
    assert store.append("metric-revenue", [aggregate_event("changed", i) for i in range(3, 5)], 3) == 5
    events = store.read_stream("metric-revenue")
    assert [e.version for e in events] == [1, 2, 3, 4, 5]
    assert [e.properties["n"] for e in events] == [0, 1, 2, 3, 4]
    assert events[0].properties["nested"] == {"k": [0]}
    assert all(e.stream_id == "metric-revenue" for e in events)
    assert [e.version for e in store.read_stream("metric-revenue", after_version=3)] == [4, 5]
    assert store.read_stream("no-such-stream") == []


def test_streams_do_not_mix_with_facts(store: EventStore) -> None:
    store.append("keys", [aggregate_event("key_created", 1)], 0)
    store.ingest([sale("f1")])
    assert [e.id for e in all_facts(store)] == ["f1"]


def test_a_stale_expected_version_is_refused(store: EventStore) -> None:
    store.append("dash-1", [aggregate_event("created", 1)], 0)
    with pytest.raises(ConcurrencyError) as info:
        store.append("dash-1", [aggregate_event("renamed", 2), aggregate_event("renamed", 3)], 0)
    err = info.value
    assert err.stream_id == "dash-1" and err.expected_version == 0
    assert "dash-1" in str(err) and "0" in str(err)
    assert [e.version for e in store.read_stream("dash-1")] == [1]


def test_two_racing_writers_exactly_one_wins(store: EventStore) -> None:
    for round_ in range(5):
        stream = f"race-{round_}"
        barrier = threading.Barrier(2)
        outcomes: list[object] = []

        def write(
            n: int, stream: str = stream, barrier: threading.Barrier = barrier, outcomes: list = outcomes
        ) -> None:
            barrier.wait()
            try:
                outcomes.append(store.append(stream, [aggregate_event("w", n), aggregate_event("w", n)], 0))
            except ConcurrencyError as exc:
                outcomes.append(exc)

        in_threads(write, (1, 2))
        assert sorted(type(o).__name__ for o in outcomes) == ["ConcurrencyError", "int"]
        events = store.read_stream(stream)
        assert [e.version for e in events] == [1, 2]
        assert len({e.properties["n"] for e in events}) == 1  # one writer's events, whole
