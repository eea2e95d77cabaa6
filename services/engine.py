"""The projection engine: runs every read model over one feed of the event store.

A feed driver (the SQLite log tail, the DynamoDB Streams poller, the Lambda handler)
reads batches of recorded events and hands each one to ``ProjectionEngine.handle``. The
engine gives the batch to every projection handler; each keeps its own checkpoint per
partition, skips what it has applied already, and applies its changes with the
checkpoint move at once (exactly once, whatever the redelivery). An error in one handler
is logged and retried with backoff (``retry_seconds``, doubling up to
``max_backoff_seconds``); the others go on. After ``retries`` failed tries, when the
engine has a ``parked`` store, it feeds that handler the failing batch one event at a
time, parks the event(s) that raise (``domain.parked``) and moves the handler past them
with an empty batch, so one poison event never stalls a read model. A store outage
(``StoreUnavailable``) is not a handler's fault: it stops the batch for everyone, and the
driver retries it.

A new read model is a pure ``Projection`` plus a ``ProjectionStore``: wrap them in a
``ReadModelHandler`` and list it in the backend's handlers (see ``bootstrap``); no
driver changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, countOf
from typing import Any, Protocol

from domain.errors import StoreUnavailable
from domain.events import FACTS_STREAM, RecordedEvent
from domain.parked import ParkedEvent, ParkedEvents
from domain.ports import CheckpointConflict, Projection, ProjectionStore

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
#: Failed tries of a batch before its poison event(s) are isolated and parked.
RETRIES = 5
MAX_BACKOFF_SECONDS = 60.0
_STREAM_ID = attrgetter("stream_id")


@dataclass(frozen=True, slots=True)
class FeedBatch:
    """Records ``first..upto`` of one partition of the log, in order.

    ``events`` are the stored events among them (facts and aggregate events), each with
    its ``position`` set (a SQLite position or a DynamoDB Streams sequence number). A
    batch may hold no events at all and still move the checkpoints past ``upto`` (e.g.
    records that are not inserts).

    ``replay``: the batch is part of a replay (rebuilding a read model from the log), not
    news; projections with side effects (alerts, webhooks) must not notify anyone for it.
    """

    partition: str
    first: int
    upto: int
    events: Sequence[RecordedEvent]
    replay: bool = False

    def facts_after(self, position: int, types: frozenset[str] | None = None) -> list[RecordedEvent]:
        """The batch's facts past ``position`` (of ``types``, when given)."""
        events = self.events
        # The common case at catch-up, asked by every read model of every batch: all of it
        # is new (positions grow within a batch) and facts only (a log tail's page).
        if (
            types is None
            and events
            and (events[0].position or 0) > position
            and countOf(map(_STREAM_ID, events), FACTS_STREAM) == len(events)
        ):
            return list(events)
        return [
            event
            for event in self.events
            if event.stream_id == FACTS_STREAM
            and (event.position or 0) > position
            and (types is None or event.type in types)
        ]


class ProjectionHandler(Protocol):
    """One read model as the engine drives it."""

    name: str

    def position(self, partition: str) -> int:
        """The last position applied in ``partition`` (0: none)."""

    def prepare(self) -> None:
        """Before each step of a driver: catch up with anything outside the feed (e.g.
        metric definitions changed since the read model was built)."""

    def handle(self, batch: FeedBatch) -> bool:
        """Apply what of ``batch`` is past this handler's checkpoint; False: nothing new."""

    def maintain(self, now: float) -> None:
        """Periodic housekeeping at epoch second ``now`` (retention), outside batches."""

    def forget(self) -> None:
        """Drop cached checkpoints: another writer moved them."""

    def flush(self) -> None:
        """Write out what the handler buffers (its ``position`` then runs ahead of what it
        stored); the engine calls it on a clean stop and once caught up. Most buffer nothing."""

    def close(self) -> None:
        """Stop what the handler runs beside the engine (a delivery thread) before the stores
        close under it; the engine is not used afterwards. Most run nothing."""


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window_seconds
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._total = 0  # of the samples in the window: a busy worker adds many a second

    def add(self, events: int) -> float:
        now = self._clock()
        self._samples.append((now, events))
        self._total += events
        while self._samples and now - self._samples[0][0] > self.window:
            self._total -= self._samples.popleft()[1]
        span = max(now - self._samples[0][0], 1.0) if len(self._samples) > 1 else 1.0
        return self._total / span


class ReadModelHandler:
    """A pure projection and its store, driven by the engine: the usual read model."""

    def __init__(self, projection: Projection[Any], store: ProjectionStore[Any]) -> None:
        self.projection = projection
        self.store = store
        self.name = projection.name
        self._positions: dict[str, int] = {}

    #: A parked event is retried as a batch of its own partition (``domain.parked``).
    retries_parked = True

    def position(self, partition: str) -> int:
        found = self._positions.get(partition)
        if found is None:
            found = self._positions[partition] = self.store.position(self.name, partition)
        return found

    def prepare(self) -> None:
        return None

    def handle(self, batch: FeedBatch) -> bool:
        own = self.position(batch.partition)
        if batch.upto <= own:
            return False
        changes = self.projection.project(batch.facts_after(own, self.projection.event_types))
        applied = self.store.apply(self.name, batch.partition, changes, own, batch.upto)
        self._positions[batch.partition] = batch.upto
        return applied

    def maintain(self, now: float) -> None:
        return None

    def flush(self) -> None:
        return None  # every batch is applied as it comes

    def close(self) -> None:
        return None

    def forget(self) -> None:
        self._positions.clear()


@dataclass(slots=True)
class HandlerState:
    handler: ProjectionHandler
    failures: int = 0
    retry_at: float = 0.0
    last_error: str | None = None
    #: Failures that may be a poison event's (not checkpoint conflicts), and when the first was.
    poison_failures: int = 0
    first_failure: float | None = None

    def recovered(self) -> None:
        self.failures = self.poison_failures = 0
        self.first_failure = self.last_error = None


@dataclass(frozen=True, slots=True)
class Handled:
    """What one batch did: handlers that applied something, and those that failed."""

    applied: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


@dataclass
class ProjectionEngine:
    """Runs every handler over the batches a driver reads; see the module docstring."""

    handlers: Sequence[ProjectionHandler]
    retry_seconds: float = RETRY_SECONDS
    clock: Callable[[], float] = time.monotonic
    #: Where poison events go after ``retries`` failed tries; None: retry forever.
    parked: ParkedEvents | None = None
    retries: int = RETRIES
    max_backoff_seconds: float = MAX_BACKOFF_SECONDS
    #: Epoch seconds, for the parked records' failure times.
    wall_clock: Callable[[], float] = time.time
    _states: list[HandlerState] = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        names = [handler.name for handler in self.handlers]
        if len(set(names)) != len(names):
            raise ValueError(f"projection names must be unique, got {names}")
        self._states = [HandlerState(handler) for handler in self.handlers]

    @property
    def names(self) -> list[str]:
        return [handler.name for handler in self.handlers]

    def _ready(self) -> list[HandlerState]:
        now = self.clock()
        return [state for state in self._states if state.retry_at <= now]

    def _failed(self, state: HandlerState, exc: Exception) -> None:
        state.failures += 1
        state.last_error = f"{type(exc).__name__}: {exc}"
        delay = min(self.retry_seconds * 2 ** min(state.failures - 1, 16), self.max_backoff_seconds)
        state.retry_at = self.clock() + delay
        state.handler.forget()
        if isinstance(exc, CheckpointConflict):
            log.warning("%s; re-reading it", exc)
        else:
            state.poison_failures += 1
            if state.first_failure is None:
                state.first_failure = self.wall_clock()
            log.exception(
                "projection %s failed (try %d); retrying in %.1f s", state.handler.name, state.poison_failures, delay
            )

    def _isolating(self, state: HandlerState) -> bool:
        return self.parked is not None and state.poison_failures >= self.retries

    def _isolate(self, state: HandlerState, batch: FeedBatch) -> bool:
        """Apply ``batch`` to a handler that failed on it ``retries`` times, one event at a
        time, parking each event that raises and moving the handler past it with an empty
        batch (exactly once, as every batch). True when anything was applied."""
        assert self.parked is not None
        handler = state.handler
        handler.forget()
        own = handler.position(batch.partition)
        applied = False
        for event in batch.events:
            position = event.position or 0
            if position <= own or position > batch.upto:
                continue
            try:
                applied |= handler.handle(FeedBatch(batch.partition, own + 1, position, [event], batch.replay))
            except (StoreUnavailable, CheckpointConflict):
                raise
            except Exception as exc:
                handler.forget()
                self._park(state, batch.partition, event, exc)
                handler.handle(FeedBatch(batch.partition, own + 1, position, [], batch.replay))
            own = position
        if batch.upto > own:
            applied |= handler.handle(FeedBatch(batch.partition, own + 1, batch.upto, [], batch.replay))
        return applied

    def _park(self, state: HandlerState, partition: str, event: RecordedEvent, exc: Exception) -> None:
        assert self.parked is not None
        now = self.wall_clock()
        error = f"{type(exc).__name__}: {exc}"
        attempts = state.poison_failures + 1
        self.parked.park(
            ParkedEvent(state.handler.name, partition, event, error, attempts, state.first_failure or now, now)
        )
        log.error(
            "projection %s parked event %s (position %s) after %d tries: %s; `pulse parked list` shows it",
            state.handler.name,
            event.id,
            event.position,
            attempts,
            error,
            exc_info=exc,
        )

    def prepare(self) -> None:
        for state in self._ready():
            try:
                state.handler.prepare()
            except StoreUnavailable:
                raise
            except Exception as exc:
                self._failed(state, exc)

    def start(self, partition: str) -> int:
        """Where a driver reads from: the lowest checkpoint of the handlers ready to run
        (a handler backing off after an error does not hold the others back)."""
        ready = self._ready() or self._states
        return min(state.handler.position(partition) for state in ready)

    def behind(self, partition: str) -> bool:
        """Whether a handler backing off after an error is behind the ready ones in
        ``partition``: a driver that cannot re-read from each handler's own checkpoint (a
        stream shard's reader, a Lambda batch) must wait for it instead of reading on."""
        now = self.clock()
        waiting = [state for state in self._states if state.retry_at > now]
        if not waiting:
            return False
        ready = [state for state in self._states if state.retry_at <= now]
        if not ready:
            return True
        return min(s.handler.position(partition) for s in waiting) < min(s.handler.position(partition) for s in ready)

    def lowest(self, partition: str) -> int:
        """The lowest checkpoint of every handler, whether or not it is backing off."""
        return min(state.handler.position(partition) for state in self._states)

    def handle(self, batch: FeedBatch) -> Handled:
        applied: list[str] = []
        failed: list[str] = []
        for state in self._ready():
            try:
                if self._isolating(state) and batch.events:
                    done = self._isolate(state, batch)
                else:
                    done = state.handler.handle(batch)
                if done:
                    applied.append(state.handler.name)
                state.recovered()
            except StoreUnavailable:
                for each in self._states:
                    each.handler.forget()
                raise
            except Exception as exc:
                self._failed(state, exc)
                failed.append(state.handler.name)
        return Handled(tuple(applied), tuple(failed))

    def maintain(self, now: float) -> None:
        for state in self._states:
            try:
                state.handler.maintain(now)
            except StoreUnavailable:
                raise
            except Exception:
                log.exception("housekeeping of projection %s failed", state.handler.name)

    def flush(self) -> None:
        """Write out what buffering handlers hold: a driver calls it when it stops cleanly
        or has caught up."""
        for state in self._states:
            try:
                state.handler.flush()
            except StoreUnavailable:
                raise
            except Exception as exc:
                self._failed(state, exc)

    def close(self) -> None:
        """Stop what the handlers run beside the engine; ``Pulse.close`` calls it before the
        stores close."""
        for state in self._states:
            try:
                state.handler.close()
            except Exception:
                log.exception("closing projection %s failed", state.handler.name)

    def ready_in(self) -> float:
        """Seconds until every handler backing off may run again (0: all are ready); a
        driver of its own loop (a replay) waits this long before handing the batch again."""
        return max([state.retry_at - self.clock() for state in self._states] + [0.0])

    def errors(self) -> dict[str, str]:
        """The last error of each handler that is failing now."""
        return {s.handler.name: s.last_error for s in self._states if s.last_error is not None}
