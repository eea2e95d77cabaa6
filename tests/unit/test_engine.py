"""The projection engine: every handler gets each batch past its own checkpoint; one that
raises is retried after a pause while the others go on; a store outage stops the batch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.errors import StoreUnavailable
from domain.events import FACTS_STREAM, RecordedEvent
from services.engine import FeedBatch, ProjectionEngine, ReadModelHandler

AT = datetime(2030, 1, 1, tzinfo=UTC)


def fact(position: int, etype: str = "sale") -> RecordedEvent:
    return RecordedEvent(f"e{position}", etype, AT, {}, None, FACTS_STREAM, None, position, AT)


class Ids:
    """A projection: the ids of the facts of a batch."""

    def __init__(self, name: str, event_types: frozenset[str] | None = None) -> None:
        self.name = name
        self.version = 1
        self.event_types = event_types

    def project(self, events):
        return [event.id for event in events]


class Store:
    """An in-memory ``ProjectionStore`` that can be told to fail."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.positions: dict[str, int] = {}
        self.fail: Exception | None = None

    def position(self, projection: str, partition: str) -> int:
        return self.positions.get(partition, 0)

    def apply(self, projection, partition, changes, after, upto) -> bool:
        if self.fail is not None:
            raise self.fail
        if self.positions.get(partition, 0) >= upto:
            return False
        self.ids.extend(changes)
        self.positions[partition] = upto
        return True


def test_a_failing_projection_is_retried_later_while_the_others_go_on() -> None:
    now = [0.0]
    good, bad = Store(), Store()
    bad.fail = ValueError("cannot digest")
    engine = ProjectionEngine(
        [ReadModelHandler(Ids("good"), good), ReadModelHandler(Ids("bad"), bad)],
        retry_seconds=5,
        clock=lambda: now[0],
    )
    handled = engine.handle(FeedBatch("", 1, 2, [fact(1), fact(2)]))
    assert handled.applied == ("good",) and handled.failed == ("bad",)
    assert "cannot digest" in engine.errors()["bad"]
    assert engine.start("") == 2  # the driver reads on for the healthy one

    engine.handle(FeedBatch("", 3, 3, [fact(3)]))
    assert good.ids == ["e1", "e2", "e3"] and bad.ids == []

    bad.fail = None
    now[0] = 6.0  # past the pause: the failed one is back, and the driver reads from its checkpoint
    assert engine.start("") == 0
    engine.handle(FeedBatch("", 1, 3, [fact(1), fact(2), fact(3)]))
    assert bad.ids == ["e1", "e2", "e3"]
    assert good.ids == ["e1", "e2", "e3"]  # nothing twice
    assert engine.errors() == {}


def test_each_projection_sees_only_its_event_types_and_what_is_past_its_checkpoint() -> None:
    sales, every = Store(), Store()
    every.positions[""] = 1
    engine = ProjectionEngine(
        [ReadModelHandler(Ids("sales", frozenset({"sale"})), sales), ReadModelHandler(Ids("every"), every)]
    )
    engine.handle(FeedBatch("", 1, 3, [fact(1), fact(2, "visit"), fact(3)]))
    assert sales.ids == ["e1", "e3"]
    assert every.ids == ["e2", "e3"]


def test_a_store_outage_stops_the_batch_for_everyone() -> None:
    down, other = Store(), Store()
    down.fail = StoreUnavailable("disk full")
    engine = ProjectionEngine([ReadModelHandler(Ids("down"), down), ReadModelHandler(Ids("other"), other)])
    with pytest.raises(StoreUnavailable):
        engine.handle(FeedBatch("", 1, 1, [fact(1)]))
    assert other.ids == []
    assert engine.errors() == {}  # not the projection's fault: nothing to back off from


def test_projection_names_are_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        ProjectionEngine([ReadModelHandler(Ids("x"), Store()), ReadModelHandler(Ids("x"), Store())])
