"""The ports Pulse's core talks to; adapters in ``storage/`` implement them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from domain.errors import PulseError
from domain.events import Event, FactPage, IngestResult, RecordedEvent


@runtime_checkable
class EventStore(Protocol):
    """Append-only store of facts and aggregate streams."""

    #: Largest event, in the adapter's own measure of a stored item, it accepts.
    max_event_bytes: int

    def ingest(self, events: Sequence[Event]) -> IngestResult:
        """Store facts idempotently by id; the whole batch or nothing.

        Raises ``EventTooLarge`` before writing anything when one event does not fit.
        """

    def append(self, stream_id: str, events: Sequence[Event], expected_version: int) -> int:
        """Append to an aggregate stream that must be at ``expected_version`` (0: new).

        Returns the stream's new version. Raises ``ConcurrencyError`` when another writer
        got there first; nothing is written then.
        """

    def read_stream(self, stream_id: str, after_version: int | None = None) -> list[RecordedEvent]:
        """Events of one aggregate stream in version order, after ``after_version``."""

    def read_facts(self, cursor: str | None = None, limit: int = 1000) -> FactPage:
        """Facts in store order, resuming after ``cursor``; for catch-up and replay."""

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""

    def close(self) -> None:
        """Release connections."""


# --- Read models -------------------------------------------------------------------------
# The view store holds what projections compute: counters, gauges, the event types seen,
# and each projection's checkpoint. Projections (pure, in ``projections/``) turn a batch
# of facts into ``ViewChanges``; a worker hands them to ``ViewStore.apply`` together with
# the checkpoint move, and the store makes both visible at once or not at all.

#: ``(metric key, resolution, bucket start in epoch seconds, dimension values)``; the
#: resolution is ``"minute"``, ``"hour"`` or ``"day"``; dimension values are strings, one
#: per dimension of the metric, in the metric's order (``()`` for none).
CounterKey = tuple[str, str, int, tuple[str, ...]]

#: ``(gauge name, key value)``.
GaugeKey = tuple[str, str]


class CounterDelta(NamedTuple):
    """What a batch adds to one counter cell: ``count`` and ``sum`` add up, ``min`` and
    ``max`` combine; ``min``/``max`` are None when the metric has no value."""

    count: int
    sum: float
    min: float | None
    max: float | None


class GaugeValue(NamedTuple):
    """A gauge reading; the one with the greater ``(occurred_at, event_id)`` wins."""

    value: float
    occurred_at: int  # epoch microseconds
    event_id: str


@dataclass(frozen=True, slots=True)
class ViewChanges:
    """What one batch of facts changes in the read models. Commutative and associative:
    batches may be merged or applied in any order and give the same result."""

    counters: Mapping[CounterKey, CounterDelta]
    gauges: Mapping[GaugeKey, GaugeValue]
    #: Facts per event type in the batch; the built-in count metric of each type.
    event_types: Mapping[str, int]
    #: Facts in the batch.
    events: int
    #: Latest ``occurredAt`` in the batch (epoch microseconds), None for an empty batch.
    watermark: int | None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a projection is in one partition of the log.

    ``partition`` is ``""`` for a log with one global order (SQLite) or a shard id
    (DynamoDB Streams); ``position`` is the last applied position or sequence number.
    ``definitions_version`` is the version of the metric-definitions stream the read
    models reflect (see ``domain.metrics``).
    """

    projection: str
    partition: str
    position: int = 0
    definitions_version: int = 0
    watermark: int | None = None  # epoch microseconds
    updated_at: int | None = None  # epoch microseconds
    events_total: int = 0
    events_per_second: float = 0.0


class CounterCell(NamedTuple):
    """Counter cells of one bucket summed over dimension tuples (and per ``group``)."""

    bucket: int
    group: str | None
    count: int
    sum: float
    min: float | None
    max: float | None


class GaugeReading(NamedTuple):
    name: str
    key: str
    value: float
    occurred_at: int  # epoch microseconds
    event_id: str


class CheckpointConflict(PulseError):
    """Another worker moved the checkpoint since this one read it; nothing was written."""

    def __init__(self, projection: str, partition: str, message: str) -> None:
        self.projection = projection
        self.partition = partition
        where = f"{projection}/{partition}" if partition else projection
        super().__init__(f"checkpoint of {where}: {message}")


@runtime_checkable
class ViewStore(Protocol):
    """Read models (counters, gauges, event types) and projection checkpoints."""

    def checkpoint(self, projection: str, partition: str = "") -> Checkpoint:
        """The stored checkpoint; position 0 and definitions version 0 when none."""

    def checkpoints(self) -> list[Checkpoint]:
        """Every stored checkpoint (for status)."""

    def apply(
        self,
        projection: str,
        partition: str,
        changes: ViewChanges,
        after: int,
        upto: int,
        definitions_version: int,
        events_per_second: float = 0.0,
    ) -> bool:
        """Apply ``changes`` (facts in ``(after, upto]``, projected with the definitions
        at ``definitions_version``) and move the checkpoint from ``after`` to ``upto``,
        all or nothing.

        Returns False and writes nothing when the checkpoint is already at ``upto`` (a
        redelivered batch). Raises ``CheckpointConflict`` when it is anywhere else, or
        when the views reflect another definitions version (catch up, then retry).
        """

    def rebuild(
        self,
        projection: str,
        partition: str,
        at_position: int,
        definitions_version: int,
        metrics: Sequence[str],
        gauges: Sequence[str],
    ) -> AbstractContextManager[Callable[[ViewChanges], None]]:
        """Replace the named metrics' counters and gauges' values with recomputed ones.

        On entry the store checks the checkpoint is at ``at_position`` (else
        ``CheckpointConflict``) and deletes the named items; the caller passes the
        changes recomputed from the facts up to ``at_position`` to the yielded function,
        as many times as it likes; a clean exit records ``definitions_version`` and
        commits everything at once, an exception leaves the store as it was.
        """

    def read_counters(
        self,
        metric: str,
        resolution: str,
        start: int,
        end: int,
        where: Mapping[int, str] | None = None,
        group_by: int | None = None,
    ) -> list[CounterCell]:
        """Cells with ``start <= bucket < end`` summed over dimension tuples, keeping
        those whose dimension ``i`` equals ``where[i]``, one row per bucket (and per value
        of dimension ``group_by`` when given), ordered by bucket."""

    def read_gauges(self, name: str, keys: Sequence[str] | None = None) -> list[GaugeReading]:
        """Readings of one gauge, all keys or the given ones, ordered by key."""

    def event_types(self) -> dict[str, int]:
        """Every event type projected so far, with its count of facts."""

    def prune(self, resolution: str, before: int) -> int:
        """Delete counter cells of ``resolution`` with bucket < ``before``; returns how many."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class PositionedLog(Protocol):
    """An event store with one global order of facts (SQLite): lag is measurable in events."""

    def last_position(self) -> int:
        """The newest position written."""
