"""The parked-events port (``domain.parked.ParkedEvents``) on its three adapters: the
SQLite views db, the DynamoDB views table (DynamoDB Local) and the in-memory fake. One
contract, subclassed per adapter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from bootstrap import bootstrap, drop_tables
from domain.events import FACTS_STREAM, RecordedEvent
from domain.parked import ParkedEvent, ParkedEvents
from domain.settings import Settings
from tests.support import real_now

AT = real_now().replace(microsecond=0)


def event(event_id: str, position: int, **properties: object) -> RecordedEvent:
    return RecordedEvent(
        id=event_id,
        type="sale",
        occurred_at=AT - timedelta(minutes=5),
        properties={"amount": 12.5, "note": "naïve ☃", **properties},
        source="pos-1",
        stream_id=FACTS_STREAM,
        version=None,
        position=position,
        received_at=AT,
    )


def parked(projection: str, event_id: str, position: int, attempts: int = 6, at: float = 1000.0) -> ParkedEvent:
    return ParkedEvent(projection, "", event(event_id, position), "ValueError: bad amount", attempts, at, at + attempts)


class ParkedEventsContract:
    @pytest.fixture
    def store(self) -> ParkedEvents:
        raise NotImplementedError

    def test_a_parked_event_is_kept_whole(self, store: ParkedEvents) -> None:
        record = parked("metrics", "e1", 41)
        store.park(record)
        assert store.get("metrics", "e1") == record
        assert store.get("metrics", "nope") is None
        assert store.get("recent-events", "e1") is None

    def test_listed_by_projection_then_position_and_counted(self, store: ParkedEvents) -> None:
        store.park(parked("metrics", "late", 90))
        store.park(parked("metrics", "early", 7))
        store.park(parked("recent-events", "other", 3))
        assert [p.event_id for p in store.list()] == ["early", "late", "other"]
        assert [p.event_id for p in store.list("metrics")] == ["early", "late"]
        assert store.list("archive") == []
        assert store.counts() == {"metrics": 2, "recent-events": 1}

    def test_parking_again_adds_attempts_and_keeps_the_first_failure(self, store: ParkedEvents) -> None:
        store.park(parked("metrics", "e1", 41, attempts=6, at=1000.0))
        store.park(ParkedEvent("metrics", "", event("e1", 41), "KeyError: 'x'", 1, 2000.0, 2000.0))
        again = store.get("metrics", "e1")
        assert again is not None
        assert (again.attempts, again.first_failure, again.last_failure, again.error) == (
            7,
            1000.0,
            2000.0,
            "KeyError: 'x'",
        )
        assert store.counts() == {"metrics": 1}

    def test_drop(self, store: ParkedEvents) -> None:
        store.park(parked("metrics", "e1", 41))
        assert store.drop("metrics", "e1") is True
        assert store.drop("metrics", "e1") is False
        assert store.get("metrics", "e1") is None and store.counts() == {}


def _opened(settings: Settings) -> Iterator[ParkedEvents]:
    pulse = bootstrap(settings, create=True)
    yield pulse.parked
    pulse.close()
    drop_tables(settings)


class TestSqliteParkedEvents(ParkedEventsContract):
    @pytest.fixture
    def store(self, sqlite_settings: Settings) -> Iterator[ParkedEvents]:
        yield from _opened(sqlite_settings)


class TestDynamoParkedEvents(ParkedEventsContract):
    @pytest.fixture
    def store(self, dynamodb_settings: Settings) -> Iterator[ParkedEvents]:
        yield from _opened(dynamodb_settings)


class TestMemoryParkedEvents(ParkedEventsContract):
    @pytest.fixture
    def store(self, memory_settings: Settings) -> Iterator[ParkedEvents]:
        yield from _opened(memory_settings)
