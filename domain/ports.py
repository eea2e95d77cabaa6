"""The ports Pulse's core talks to; adapters in ``storage/`` implement them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol, TypeVar, runtime_checkable

from domain.errors import PulseError
from domain.events import Event, FactPage, IngestResult, RecordedEvent
from domain.micros import later, now_micros

C_co = TypeVar("C_co", covariant=True)
C_contra = TypeVar("C_contra", contravariant=True)


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


def all_facts(store: EventStore, page_size: int = 1000) -> list[RecordedEvent]:
    """Every fact in the store, read page by page as a catching-up worker would (tests, benches)."""
    facts: list[RecordedEvent] = []
    cursor = None
    while True:
        page = store.read_facts(cursor, limit=page_size)
        if not page.events:
            return facts
        facts.extend(page.events)
        cursor = page.cursor


# --- Read models -------------------------------------------------------------------------
# A read model is a pure ``Projection`` (in ``projections/``: a batch of facts in, changes
# out) plus the store that applies those changes together with the projection's
# checkpoint, at once or not at all. ``services.engine`` runs every projection over one
# feed; readers use the small ports below (``CounterReader``, ``Checkpoints``,
# ``ChangeMarkers``, ``RecentEventsReader``).

#: ``(metric key, resolution, bucket start in epoch seconds, dimension values)``; the
#: resolution is ``"minute"``, ``"hour"`` or ``"day"`` (or ``"skipped"``: a metric's count of
#: values that were not numbers, ``domain.metrics.SKIPPED``); dimension values are strings, one
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
    #: DynamoDB Streams: how far behind the reader of the shard was (seconds, from the
    #: records' approximate creation time) when it last read, at ``lag_measured_at`` (epoch µs).
    lag_seconds: float | None = None
    lag_measured_at: int | None = None


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


# --- Checkpoint rules every store with one global order applies (SQLite, memory) ---------


def batch_applies(current: Checkpoint, after: int, upto: int, definitions_version: int) -> bool:
    """``CounterWriter.apply``'s check of the stored checkpoint ``current``: False for a
    redelivered batch (already at ``upto``), ``CheckpointConflict`` when it is anywhere but
    ``after`` or reflects another definitions version, else True."""
    if current.position == upto and upto != after:
        return False
    if current.position != after:
        raise CheckpointConflict(
            current.projection, current.partition, f"is at {current.position}, expected {after} or {upto}"
        )
    if current.definitions_version != definitions_version:
        raise CheckpointConflict(
            current.projection,
            current.partition,
            f"views reflect definitions version {current.definitions_version},"
            f" the batch was projected with {definitions_version}",
        )
    return True


def expect_position(current: Checkpoint, at_position: int) -> None:
    """``CheckpointConflict`` unless the stored checkpoint ``current`` is at ``at_position``."""
    if current.position != at_position:
        raise CheckpointConflict(
            current.projection, current.partition, f"is at {current.position}, expected {at_position}"
        )


def advanced(
    current: Checkpoint,
    upto: int,
    changes: ViewChanges | RecentChanges,
    definitions_version: int = 0,
    events_per_second: float = 0.0,
) -> Checkpoint:
    """The checkpoint after a batch of ``changes`` moved it from ``current`` to ``upto``:
    the watermark at the later of the two, the batch's facts counted, updated now."""
    return Checkpoint(
        projection=current.projection,
        partition=current.partition,
        position=upto,
        definitions_version=definitions_version,
        watermark=later(current.watermark, changes.watermark),
        updated_at=now_micros(),
        events_total=current.events_total + changes.events,
        events_per_second=events_per_second,
    )


def rebuilt(current: Checkpoint, definitions_version: int) -> Checkpoint:
    """The checkpoint after a rebuild: where it was, now reflecting ``definitions_version``."""
    return replace(current, definitions_version=definitions_version)


# --- Read-model ports, each what one kind of user needs ---------------------------------


@runtime_checkable
class Checkpoints(Protocol):
    """Where each projection is in each partition of the log (status, drivers)."""

    def checkpoint(self, projection: str, partition: str = "") -> Checkpoint:
        """The stored checkpoint; position 0 and definitions version 0 when none."""

    def checkpoints(self) -> list[Checkpoint]:
        """Every stored checkpoint (for status)."""


@runtime_checkable
class ChangeMarkers(Protocol):
    """What live subscriptions poll to learn which read models changed."""

    def change_markers(self) -> dict[str, int]:
        """Every change marker written so far, ``{marker key: version}``, in ONE cheap read.

        Live subscriptions poll this every ~100 ms per server process (``api.live``) and
        recompute only what changed, so its contract is exact:

        - Keys (see ``marker_keys``): ``metric:<counter key>`` for a metric's counters
          (the ``CounterKey`` metric: a defined metric's name, ``type:<event type>`` for a
          built-in count), ``gauge:<name>`` for a gauge's readings, ``projections`` for
          the checkpoints, ``recent:<type>`` and ``recent:*`` for the recent-events feed.
          A key never written is absent (read it as version 0).
        - A committed write that changes the data behind a key makes that key's version
          strictly greater than before, across processes and restarts. Versions are
          opaque integers: compare them, never derive positions from them.
        - Never ahead of the data: once a reader sees version v, the changes that
          produced v are visible to its later reads of that key's data (SQLite: the bump
          is in the same transaction; a store without cross-item transactions bumps
          after the data writes succeeded, and reads the markers strongly consistent).
        - Keys whose data a write did not touch keep their version (subscribers of
          other metrics are not woken). An extra bump with no visible change is allowed
          (it costs a recomputation); a missed bump is not. A write that commits nothing
          (``apply`` returning False, a failed or aborted ``rebuild``) bumps nothing.
        - Cheap to write: one increment per distinct key per batch, not per event.
        """


@runtime_checkable
class CounterReader(Protocol):
    """Counters, gauges and event types, as queries read them."""

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


@runtime_checkable
class CounterWriter(Protocol):
    """How the counters projection writes on a log with one global order (SQLite, memory).

    DynamoDB Streams have no global order: its counters are written per shard with item
    guards by ``storage.dynamodb_views`` and the stream projector instead.
    """

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

    def prune(self, resolution: str, before: int) -> int:
        """Delete counter cells of ``resolution`` with bucket < ``before``; returns how many."""


@runtime_checkable
class ViewStore(Checkpoints, ChangeMarkers, CounterReader, Protocol):
    """The counters' read models as the API reads them: what one backend opens."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class PositionedViewStore(ViewStore, CounterWriter, Protocol):
    """A view store written through a log with one global order (SQLite, memory)."""


# --- Recent events -----------------------------------------------------------------------

#: How many facts the recent-events read model keeps per event type and overall.
RECENT_KEEP = 1000
#: The ``type`` under which the newest facts of every type are kept.
ALL_TYPES = "*"


@dataclass(frozen=True, slots=True)
class RecentChanges:
    """What one batch adds to the recent-events feed: for each scope (an event type, or
    ``ALL_TYPES``), the batch's newest facts, newest first, at most ``RECENT_KEEP``."""

    scopes: Mapping[str, Sequence[RecordedEvent]]
    events: int
    watermark: int | None


@runtime_checkable
class RecentEventsReader(Protocol):
    def recent_events(self, event_type: str | None, limit: int) -> list[RecordedEvent]:
        """The newest facts (of one type, or of all), newest ``occurredAt`` first, then id."""


@runtime_checkable
class ProjectionStore(Protocol[C_contra]):
    """The writing side of a simple read model: changes and checkpoint, all or nothing."""

    def position(self, projection: str, partition: str) -> int:
        """The checkpoint's position (0: nothing applied yet)."""

    def apply(self, projection: str, partition: str, changes: C_contra, after: int, upto: int) -> bool:
        """Apply ``changes`` of the records in ``(after, upto]`` and move the checkpoint to
        ``upto``. Returns False, writing nothing, when the checkpoint is already at or
        past ``upto`` (a redelivery). Bumps the change markers of what it changed."""


@runtime_checkable
class Projection(Protocol[C_co]):
    """A read model's pure half: a name, a version, the event types it wants (None: every
    fact), and a function from a batch of facts to the changes its store applies."""

    name: str
    version: int
    event_types: frozenset[str] | None

    def project(self, events: Sequence[RecordedEvent]) -> C_co:
        """The changes of these facts (in log order); no I/O."""


#: The change marker of the checkpoints (projection status).
PROJECTIONS_MARKER = "projections"


def metric_marker(counter_key: str) -> str:
    """The change marker of one metric's counters (its ``MetricDefinition.key``)."""
    return f"metric:{counter_key}"


def gauge_marker(name: str) -> str:
    """The change marker of one gauge's readings."""
    return f"gauge:{name}"


def recent_marker(scope: str) -> str:
    """The change marker of the recent-events feed of one type (or ``ALL_TYPES``)."""
    return f"recent:{scope}"


def rebuild_markers(metrics: Iterable[str], gauges: Iterable[str]) -> set[str]:
    """The change markers a rebuild of ``metrics`` and ``gauges`` touches, checkpoint included."""
    return {PROJECTIONS_MARKER, *map(metric_marker, metrics), *map(gauge_marker, gauges)}


def marker_keys(changes: ViewChanges) -> set[str]:
    """The change markers a batch's changes touch, checkpoint included."""
    keys = {PROJECTIONS_MARKER}
    keys.update(map(metric_marker, {key[0] for key in changes.counters}))  # a marker per metric, not per cell
    keys.update(gauge_marker(name) for name, _ in changes.gauges)
    return keys


@runtime_checkable
class PositionedLog(Protocol):
    """An event store with one global order of facts (SQLite): lag is measurable in events."""

    def last_position(self) -> int:
        """The newest position written."""
