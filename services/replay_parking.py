"""Poison events during a replay: the live engine's rule, not a failed replay.

A replay hands its pages to the projection through a one-handler ``ProjectionEngine``
(``services.engine``), so an event the projection raises on is retried
``PULSE_PROJECTION_RETRIES`` times with the same backoff, then the page is fed one event at
a time and each event that still raises is parked (``domain.parked``) under the
projection's name, and the replay goes on to its switch. ``pulse parked retry`` then
applies it to the read model that serves by then: the new generation.

``ReplayParking.handle`` drives a projection handler (the positioned replays, SQLite);
``ReplayParking.project`` runs a pure projection over a page of a scan (DynamoDB), where
the facts have no log positions of their own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from domain.events import RecordedEvent
from domain.parked import ParkedEvent, ParkedEvents
from services.engine import MAX_BACKOFF_SECONDS, FeedBatch, ProjectionEngine, ProjectionHandler

T = TypeVar("T")

#: The partition of the parked records of a DynamoDB replay's scan (it reads no shard).
SCAN_PARTITION = "replay"


def scan_partition(gen: int) -> str:
    """The parked records' partition of a scan into generation ``gen``: a retry counts the
    event into that generation (the scan was to count it there, the live feed was not)."""
    return f"{SCAN_PARTITION}:{gen}"


def scanned_into(parked: ParkedEvent | None) -> int | None:
    """The generation whose scan parked ``parked`` (None: the live feed parked it)."""
    if parked is None or not parked.partition.startswith(SCAN_PARTITION + ":"):
        return None
    return int(parked.partition[len(SCAN_PARTITION) + 1 :])


@dataclasses.dataclass
class ReplayParking:
    """Where a replay parks its poison events and how often it retries them first; without
    a parked store (``parked=None``) a poison event fails the replay, as before."""

    parked: ParkedEvents | None
    retries: int
    retry_seconds: float
    max_backoff_seconds: float = MAX_BACKOFF_SECONDS
    sleep: Callable[[float], None] = time.sleep
    #: The backoff's clock (``sleep`` moves it).
    monotonic: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time

    def _engine(self, handler: ProjectionHandler, parked: ParkedEvents) -> ProjectionEngine:
        return ProjectionEngine(
            [handler],
            retry_seconds=self.retry_seconds,
            parked=parked,
            retries=self.retries,
            max_backoff_seconds=self.max_backoff_seconds,
            clock=self.monotonic,
            wall_clock=self.wall_clock,
        )

    def handle(self, handler: ProjectionHandler, batch: FeedBatch) -> None:
        """Apply ``batch`` to ``handler``, parking what it cannot digest after the retries
        (a store outage still raises: the replay stops and can be run again)."""
        if self.parked is None:
            handler.handle(batch)
            return
        self._run(self._engine(handler, self.parked), batch)

    def _run(self, engine: ProjectionEngine, batch: FeedBatch) -> None:
        """Hand ``batch`` to the engine's one handler until it has taken it (applied, or
        its poison events parked), waiting out the backoff between the tries."""
        while True:
            wait = engine.ready_in()
            if wait > 0:
                self.sleep(wait)
            elif not engine.handle(batch).failed:
                return

    def project(
        self,
        name: str,
        facts: Sequence[RecordedEvent],
        project: Callable[[Sequence[RecordedEvent]], T],
        partition: str = SCAN_PARTITION,
    ) -> T:
        """``project(facts)``; when it raises, the live rule over the page: the facts that
        still raise alone after the retries are parked under ``name`` (and ``partition``),
        and the result is the projection of the others."""
        try:
            return project(facts)
        except Exception:
            if self.parked is None:
                raise
        # A scan's facts carry no log position: number them within the page, so the engine
        # can isolate them, and park the originals.
        numbered = [fact._replace(position=index) for index, fact in enumerate(facts, start=1)]
        page = _Page(name, project)
        originals = {fact.id: fact for fact in facts}
        self._run(self._engine(page, _Originals(self.parked, originals)), FeedBatch(partition, 1, len(facts), numbered))
        return page.result()


class _Page(Generic[T]):
    """A pure projection over one page as an engine's handler: it keeps what it projected."""

    retries_parked = False

    def __init__(self, name: str, project: Callable[[Sequence[RecordedEvent]], T]) -> None:
        self.name = name
        self._project = project
        self._position = 0
        self._taken: list[RecordedEvent] = []

    def position(self, partition: str) -> int:
        return self._position

    def prepare(self) -> None:
        return None

    def handle(self, batch: FeedBatch) -> bool:
        facts = [fact for fact in batch.events if (fact.position or 0) > self._position]
        self._project(facts)  # raises on a poison event
        self._taken += facts
        self._position = batch.upto
        return bool(facts)

    def result(self) -> T:
        """The projection of every fact it took, in one call (the shape a page's has)."""
        return self._project(self._taken)

    def maintain(self, now: float) -> None:
        return None

    def forget(self) -> None:
        return None

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


class _Originals:
    """Parks the page's original facts (with their own positions, if any) in ``parked``."""

    def __init__(self, parked: ParkedEvents, originals: dict[str, RecordedEvent]) -> None:
        self._parked = parked
        self._originals = originals

    def park(self, parked: ParkedEvent) -> None:
        original = self._originals.get(parked.event_id, parked.event)
        if original.position is None:
            # A retry feeds the event as a batch ending at its position: it needs one.
            original = original._replace(position=1)
        self._parked.park(dataclasses.replace(parked, event=original))

    def get(self, projection: str, event_id: str) -> ParkedEvent | None:
        return self._parked.get(projection, event_id)

    def list(self, projection: str | None = None) -> list[ParkedEvent]:
        return self._parked.list(projection)

    def counts(self) -> dict[str, int]:
        return self._parked.counts()

    def drop(self, projection: str, event_id: str) -> bool:
        return self._parked.drop(projection, event_id)
