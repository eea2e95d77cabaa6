"""Poison events: a handler that keeps raising on an event is retried with backoff, then
the engine parks that event alone and applies the rest; an outage or a checkpoint
conflict is never parked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.errors import StoreUnavailable
from domain.events import FACTS_STREAM, RecordedEvent
from domain.ports import CheckpointConflict
from services.engine import FeedBatch, ProjectionEngine, ReadModelHandler
from storage.memory_parked import MemoryParkedEvents
from tests.unit.test_engine import Store

AT = datetime(2030, 1, 1, tzinfo=UTC)


def fact(position: int, **properties: object) -> RecordedEvent:
    return RecordedEvent(f"e{position}", "sale", AT, properties, None, FACTS_STREAM, None, position, AT)


class Ids:
    """A projection: the ids of a batch's facts; raises on a fact with ``poison`` while ``broken``."""

    def __init__(self, name: str, broken: bool = True) -> None:
        self.name = name
        self.version = 1
        self.event_types = None
        self.broken = broken

    def project(self, events):
        for event in events:
            if self.broken and event.properties.get("poison"):
                raise ValueError(f"cannot digest {event.id}")
        return [event.id for event in events]


BATCH = FeedBatch("", 1, 5, [fact(1), fact(2), fact(3, poison=True), fact(4), fact(5)])


def engine_of(*handlers, parked, retries=2, now=None):
    clock = (lambda: now[0]) if now is not None else (lambda: 0.0)
    return ProjectionEngine(
        list(handlers), retry_seconds=1, clock=clock, parked=parked, retries=retries, wall_clock=lambda: 1234.5
    )


def test_after_the_retries_the_poison_event_is_parked_and_the_rest_applied() -> None:
    now = [0.0]
    parked = MemoryParkedEvents()
    fragile, good = Store(), Store()
    handlers = [ReadModelHandler(Ids("fragile"), fragile), ReadModelHandler(Ids("good", broken=False), good)]
    engine = engine_of(*handlers, parked=parked, now=now)

    assert engine.handle(BATCH).failed == ("fragile",)
    now[0] = 0.5
    assert engine.handle(BATCH).failed == ()  # backing off: not ready yet
    now[0] = 1.0
    assert engine.handle(BATCH).failed == ("fragile",)  # second try; the backoff doubles to 2 s
    now[0] = 2.9
    assert engine.handle(BATCH).applied == ()
    assert parked.list() == []
    now[0] = 3.0
    handled = engine.handle(BATCH)  # after two failed tries: one event at a time
    assert handled.applied == ("fragile",) and handled.failed == ()

    assert fragile.ids == ["e1", "e2", "e4", "e5"] and fragile.positions[""] == 5
    assert good.ids == ["e1", "e2", "e3", "e4", "e5"]
    (record,) = parked.list()
    assert (record.projection, record.event_id, record.partition, record.position) == ("fragile", "e3", "", 3)
    assert record.attempts == 3 and "cannot digest e3" in record.error
    assert record.first_failure == record.last_failure == 1234.5
    assert engine.errors() == {}
    engine.handle(FeedBatch("", 6, 6, [fact(6)]))
    assert fragile.ids[-1] == "e6"


def test_without_a_parked_store_it_retries_forever() -> None:
    fragile = Store()
    engine = ProjectionEngine([ReadModelHandler(Ids("fragile"), fragile)], retry_seconds=0, retries=1)
    for _ in range(5):
        assert engine.handle(BATCH).failed == ("fragile",)
    assert fragile.ids == []


@pytest.mark.parametrize("error", [StoreUnavailable("disk full"), CheckpointConflict("fragile", "", "moved")])
def test_an_outage_or_a_conflict_is_never_parked(error: Exception) -> None:
    parked = MemoryParkedEvents()
    store = Store()
    store.fail = error
    now = [0.0]
    engine = engine_of(ReadModelHandler(Ids("fragile"), store), parked=parked, retries=0, now=now)
    for _ in range(3):
        now[0] += 100
        if isinstance(error, StoreUnavailable):
            with pytest.raises(StoreUnavailable):
                engine.handle(BATCH)
        else:
            assert engine.handle(BATCH).failed == ("fragile",)
    assert parked.list() == [] and store.ids == []


def test_a_driver_that_cannot_re_read_per_handler_is_told_to_wait_for_one_backing_off() -> None:
    now = [0.0]
    fragile, good = Store(), Store()
    handlers = [ReadModelHandler(Ids("fragile"), fragile), ReadModelHandler(Ids("good", broken=False), good)]
    engine = engine_of(*handlers, parked=MemoryParkedEvents(), now=now)
    assert not engine.behind("")
    engine.handle(BATCH)  # good applies it, fragile fails and backs off for 1 s
    assert engine.behind("")
    now[0] = 1.0
    assert not engine.behind("")  # ready again: the driver re-reads from the lowest checkpoint
