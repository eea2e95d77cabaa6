"""In-memory fakes of the storage ports, for tests: the event store, the counters' view
store and the recent-events feed, with the embedded (SQLite) store's semantics and none of
its I/O. Not for production: nothing survives the process.

They mirror ``storage.sqlite``, ``storage.sqlite_views`` and ``storage.sqlite_recent``
rule for rule, and pass the same contract suites (``tests/contract``, ``tests/projections``):

- ``MemoryEventStore``: one global order of positions shared by facts and aggregate
  events (``PositionedLog``); ids unique across both, a repeated fact id a duplicate,
  a colliding aggregate event a ``ConcurrencyError``; properties kept as the JSON text
  the adapters store (``storage.codec``) and sizes measured as SQLite measures them.
- ``MemoryViewStore``: ``apply`` moves the checkpoint with the changes at once, or refuses
  the batch whole; ``rebuild`` holds the write lock until it commits everything at once
  (readers see the old values meanwhile) or, on an exception, nothing; each write bumps
  the change markers of what it touched, in the same step. Values combine with the pure
  core's rules (``projections.counters.combine``, ``projections.gauges.newer``,
  ``projections.series.aggregate_cells``).
- ``MemoryRecentEvents``: the newest ``keep`` facts per scope, in the view store's
  checkpoints, markers and write lock, as the SQLite feed shares the views file.

Two locks per view store: writers take turns on the write lock (as on SQLite's write
lock, with its 30 s busy timeout); the data lock guards each short read and each commit,
so a reader never waits for a rebuild in progress (as under WAL).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import NamedTuple

from domain.errors import ConcurrencyError, StoreUnavailable
from domain.events import (
    FACTS_STREAM,
    Event,
    FactPage,
    IngestResult,
    Payload,
    RecordedEvent,
    conflicting_ids,
    payload,
)
from domain.micros import epoch_micros
from domain.ports import (
    ALL_TYPES,
    PROJECTIONS_MARKER,
    RECENT_KEEP,
    Checkpoint,
    CounterCell,
    CounterDelta,
    GaugeReading,
    GaugeValue,
    RecentChanges,
    ViewChanges,
    advanced,
    batch_applies,
    expect_position,
    marker_keys,
    metric_marker,
    rebuild_markers,
    rebuilt,
    recent_marker,
)
from projections.counters import combine
from projections.gauges import newer
from projections.series import aggregate_cells
from storage.codec import dumps, event_columns, loads

#: As the embedded store: DynamoDB's item limit, so an event accepted here fits everywhere.
MAX_EVENT_BYTES = 400 * 1024
#: How long a writer waits for another's turn before giving up (SQLite's busy timeout).
BUSY_SECONDS = 30.0

_PAD = ("", "", "")


class _Row(NamedTuple):
    """One stored event, as the embedded store keeps its columns (a fact in the recent
    feed: its position, if any, ``FACTS_STREAM`` and no version)."""

    position: int | None
    id: str
    stream_id: str
    version: int | None
    type: str
    occurred_at: int  # epoch microseconds
    source: str | None
    properties: str  # JSON text
    received_at: int  # epoch microseconds

    def event(self) -> RecordedEvent:
        return RecordedEvent.at_micros(
            id=self.id,
            type=self.type,
            occurred_micros=self.occurred_at,
            properties=loads(self.properties),
            source=self.source,
            stream_id=self.stream_id,
            version=self.version,
            position=self.position,
            received_micros=self.received_at,
            properties_json=self.properties,
        )


def _payload(row: _Row) -> Payload:
    return payload(row.type, row.occurred_at, row.source, loads(row.properties))


class MemoryEventStore:
    """``EventStore`` and ``PositionedLog`` in a process's memory."""

    max_event_bytes = MAX_EVENT_BYTES

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._facts: list[_Row] = []
        self._fact_positions: list[int] = []
        self._streams: dict[str, list[_Row]] = {}
        self._ids: set[str] = set()
        self._by_id: dict[str, _Row] = {}
        self._position = 0

    def _rows(self, stream_id: str, events: Sequence[Event], first_version: int | None) -> list[_Row]:
        """The rows of ``events``, positions not yet given; ``EventTooLarge`` before anything."""
        return [_Row(0, *columns) for columns in event_columns(stream_id, events, first_version, MAX_EVENT_BYTES)]

    def _positioned(self, row: _Row) -> _Row:
        self._position += 1
        self._ids.add(row.id)
        self._by_id[row.id] = row
        return row._replace(position=self._position)

    def ingest(self, events: Sequence[Event]) -> IngestResult:
        rows = self._rows(FACTS_STREAM, events, None)
        with self._lock:
            duplicate = []
            stored = []
            for row in rows:
                seen = row.id in self._ids
                duplicate.append(seen)
                if not seen:
                    stored.append(self._positioned(row))
            self._facts.extend(stored)
            self._fact_positions.extend(row.position for row in stored)
            ids = tuple(row.id for row in rows)
            conflicts = conflicting_ids(
                ids,
                duplicate,
                lambda index: _payload(rows[index]),
                {row.id: _payload(self._by_id[row.id]) for row, seen in zip(rows, duplicate, strict=True) if seen},
            )
        return IngestResult(ids, tuple(duplicate), conflicts)

    def append(self, stream_id: str, events: Sequence[Event], expected_version: int) -> int:
        if stream_id == FACTS_STREAM:
            raise ValueError(f"{FACTS_STREAM} is written with ingest(), not append()")
        rows = self._rows(stream_id, events, expected_version + 1)
        with self._lock:
            stream = self._streams.get(stream_id, [])
            current = stream[-1].version if stream else 0
            if current != expected_version:
                raise ConcurrencyError(stream_id, expected_version, current)
            ids = [row.id for row in rows]
            if len(set(ids)) != len(ids) or not self._ids.isdisjoint(ids):
                # As SQLite's unique id: only an id reused from elsewhere collides here.
                raise ConcurrencyError(stream_id, expected_version, None)
            if rows:
                self._streams[stream_id] = [*stream, *map(self._positioned, rows)]
        return expected_version + len(rows)

    def read_stream(self, stream_id: str, after_version: int | None = None) -> list[RecordedEvent]:
        with self._lock:
            stream = self._streams.get(stream_id, [])
        after = after_version or 0
        return [row.event() for row in stream if (row.version or 0) > after]

    def read_facts(self, cursor: str | None = None, limit: int = 1000) -> FactPage:
        after = int(cursor) if cursor else 0
        with self._lock:
            start = bisect.bisect_right(self._fact_positions, after)
            rows = self._facts[start : start + limit]
        events = tuple(row.event() for row in rows)
        return FactPage(events, str(events[-1].position) if events else cursor)

    def last_position(self) -> int:
        """The newest position written (facts and aggregate events)."""
        with self._lock:
            return self._position

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


class _Cells:
    """The counter cells of one metric and resolution: bucket → dimension values → delta."""

    __slots__ = ("_order", "by_bucket")

    def __init__(self) -> None:
        self.by_bucket: dict[int, dict[tuple[str, ...], CounterDelta]] = {}
        self._order: list[int] | None = []

    def add(self, bucket: int, dims: tuple[str, ...], delta: CounterDelta) -> None:
        cells = self.by_bucket.get(bucket)
        if cells is None:
            cells = self.by_bucket[bucket] = {}
            self._order = None
        cells[dims] = combine(cells.get(dims), delta)

    def between(self, start: int, end: int) -> list[tuple[int, tuple[str, ...], CounterDelta]]:
        if self._order is None:
            self._order = sorted(self.by_bucket)
        low = bisect.bisect_left(self._order, start)
        high = bisect.bisect_left(self._order, end)
        return [
            (bucket, dims, delta) for bucket in self._order[low:high] for dims, delta in self.by_bucket[bucket].items()
        ]

    def prune(self, before: int) -> int:
        doomed = [bucket for bucket in self.by_bucket if bucket < before]
        deleted = 0
        for bucket in doomed:
            deleted += len(self.by_bucket.pop(bucket))
        if doomed:
            self._order = None
        return deleted


def _column(index: int) -> int:
    # As SQLite's columns d1..d3: a metric has at most 3 dimensions.
    if index not in (0, 1, 2):
        raise ValueError(f"dimension index must be 0, 1 or 2, got {index!r}")
    return index


class MemoryViewStore:
    """``PositionedViewStore`` (counters, gauges, event types, checkpoints, change markers)."""

    def __init__(self, busy_seconds: float = BUSY_SECONDS) -> None:
        self.busy_seconds = busy_seconds
        self._write_lock = threading.Lock()
        self._data = threading.Lock()
        self._counters: dict[tuple[str, str], _Cells] = {}
        self._gauges: dict[str, dict[str, GaugeValue]] = {}
        self._types: dict[str, int] = {}
        self._checkpoints: dict[tuple[str, str], Checkpoint] = {}
        self._markers: dict[str, int] = {}
        self._timezone: str | None = None

    # --- the write turn, shared with the other read models of this store ---------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        """This thread's turn to write; ``StoreUnavailable`` after ``busy_seconds``."""
        if not self._write_lock.acquire(timeout=self.busy_seconds):
            raise StoreUnavailable(f"in-memory view store: no write turn within {self.busy_seconds:.0f} s")
        try:
            yield
        finally:
            self._write_lock.release()

    def commit(self, mutate: Callable[[], None], markers: Collection[str], checkpoint: Checkpoint | None) -> None:
        """Within the caller's write turn: ``mutate`` the data, bump ``markers`` and save
        ``checkpoint``, in one step readers see whole."""
        with self._data:
            mutate()
            for key in markers:
                self._markers[key] = self._markers.get(key, 0) + 1
            if checkpoint is not None:
                self._checkpoints[(checkpoint.projection, checkpoint.partition)] = checkpoint

    @contextmanager
    def reading(self) -> Iterator[None]:
        """A consistent read of this store's data."""
        with self._data:
            yield

    # --- Checkpoints -------------------------------------------------------------------

    def checkpoint(self, projection: str, partition: str = "") -> Checkpoint:
        with self._data:
            return self._checkpoints.get((projection, partition)) or Checkpoint(projection, partition)

    def checkpoints(self) -> list[Checkpoint]:
        with self._data:
            return [self._checkpoints[key] for key in sorted(self._checkpoints)]

    # --- Writes ------------------------------------------------------------------------

    def _write(self, changes: ViewChanges) -> None:
        """Add ``changes`` to the data; under the data lock."""
        for (metric, resolution, bucket, dims), delta in changes.counters.items():
            cells = self._counters.get((metric, resolution))
            if cells is None:
                cells = self._counters[(metric, resolution)] = _Cells()
            cells.add(bucket, (*dims, *_PAD)[:3], delta)
        for (name, key), reading in changes.gauges.items():
            readings = self._gauges.setdefault(name, {})
            if newer(reading, readings.get(key)):
                readings[key] = reading
        for etype, n in changes.event_types.items():
            self._types[etype] = self._types.get(etype, 0) + n

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
        with self.writing():
            current = self.checkpoint(projection, partition)
            if not batch_applies(current, after, upto, definitions_version):
                return False
            moved = advanced(current, upto, changes, current.definitions_version, events_per_second)
            self.commit(lambda: self._write(changes), marker_keys(changes), moved)
        return True

    @contextmanager
    def rebuild(
        self,
        projection: str,
        partition: str,
        at_position: int,
        definitions_version: int,
        metrics: Sequence[str],
        gauges: Sequence[str],
    ) -> Iterator[Callable[[ViewChanges], None]]:
        # The write turn for the whole rebuild: the checkpoint cannot move meanwhile. The
        # changes wait in ``added`` and are committed with the deletes at once on a clean exit.
        with self.writing():
            current = self.checkpoint(projection, partition)
            expect_position(current, at_position)
            touched = rebuild_markers(metrics, gauges)
            added: list[ViewChanges] = []

            def add(changes: ViewChanges) -> None:
                added.append(changes)
                touched.update(marker_keys(changes))

            yield add

            def replace() -> None:
                doomed = set(metrics)
                for key in [key for key in self._counters if key[0] in doomed]:
                    del self._counters[key]
                for name in gauges:
                    self._gauges.pop(name, None)
                for changes in added:
                    self._write(changes)

            self.commit(replace, touched, rebuilt(current, definitions_version))

    def prune(self, resolution: str, before: int) -> int:
        with self.writing(), self._data:
            deleted = 0
            pruned: set[str] = set()
            for (metric, found), cells in self._counters.items():
                if found == resolution:
                    gone = cells.prune(before)
                    if gone:
                        deleted += gone
                        pruned.add(metric_marker(metric))
            for key in pruned:
                self._markers[key] = self._markers.get(key, 0) + 1
        return deleted

    def reset_if_timezone_changed(self, timezone: str) -> bool:
        """As the embedded store: day buckets depend on the day time zone, so when it
        differs from the one the views were computed in, drop every read model and
        checkpoint (markers move, never go back). True when it did."""
        with self.writing(), self._data:
            changed = self._timezone is not None and self._timezone != timezone
            if changed:
                self._counters.clear()
                self._gauges.clear()
                self._types.clear()
                self._checkpoints.clear()
                for key in self._markers:
                    self._markers[key] += 1
            self._timezone = timezone
        return changed

    # --- Reads -------------------------------------------------------------------------

    def read_counters(
        self,
        metric: str,
        resolution: str,
        start: int,
        end: int,
        where: Mapping[int, str] | None = None,
        group_by: int | None = None,
    ) -> list[CounterCell]:
        for index in where or {}:
            _column(index)
        if group_by is not None:
            _column(group_by)
        with self._data:
            cells = self._counters.get((metric, resolution))
            found = cells.between(start, end) if cells is not None and start < end else []
        return aggregate_cells(found, where, group_by)

    def read_gauges(self, name: str, keys: Sequence[str] | None = None) -> list[GaugeReading]:
        with self._data:
            readings = dict(self._gauges.get(name, {}))
        wanted = sorted(readings) if keys is None else sorted(set(keys) & readings.keys())
        return [GaugeReading(name, key, *readings[key]) for key in wanted]

    def event_types(self) -> dict[str, int]:
        with self._data:
            return dict(sorted(self._types.items()))

    def change_markers(self) -> dict[str, int]:
        with self._data:
            return dict(self._markers)

    def close(self) -> None:
        return None


class MemoryRecentEvents:
    """``ProjectionStore[RecentChanges]`` and ``RecentEventsReader`` beside a ``MemoryViewStore``."""

    def __init__(self, views: MemoryViewStore, keep: int = RECENT_KEEP) -> None:
        self.views = views
        self.keep = keep
        self._scopes: dict[str, dict[tuple[int, str], _Row]] = {}

    def position(self, projection: str, partition: str) -> int:
        return self.views.checkpoint(projection, partition).position

    def apply(self, projection: str, partition: str, changes: RecentChanges, after: int, upto: int) -> bool:
        with self.views.writing():
            current = self.views.checkpoint(projection, partition)
            if current.position >= upto:
                return False

            def insert() -> None:
                for scope, events in changes.scopes.items():
                    rows = self._scopes.setdefault(scope, {})
                    for event in events:
                        micros = epoch_micros(event.occurred_at)
                        rows.setdefault(
                            (micros, event.id),
                            _Row(
                                event.position,
                                event.id,
                                FACTS_STREAM,
                                None,
                                event.type,
                                micros,
                                event.source,
                                dumps(dict(event.properties)),
                                epoch_micros(event.received_at),
                            ),
                        )
                    for key in sorted(rows)[: max(len(rows) - self.keep, 0)]:
                        del rows[key]

            touched = {PROJECTIONS_MARKER, *map(recent_marker, changes.scopes)}
            self.views.commit(insert, touched, advanced(current, upto, changes))
        return True

    def recent_events(self, event_type: str | None, limit: int) -> list[RecordedEvent]:
        with self.views.reading():
            rows = self._scopes.get(event_type or ALL_TYPES, {})
            newest = [rows[key] for key in sorted(rows, reverse=True)[: max(limit, 0)]]
        return [row.event() for row in newest]


__all__ = ["MemoryEventStore", "MemoryRecentEvents", "MemoryViewStore"]
