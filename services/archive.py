"""The archive read model: every fact, once, in Parquet files in a blob store.

``ArchiveHandler`` is a projection handler (``services.engine``) that buffers facts and
writes them out (``projections.archive.files_of_rows``) when the buffer reaches
``max_bytes`` (of Arrow columns: each batch is buffered as ``Rows``, so memory stays near
that figure), when its oldest fact has waited
``max_age_seconds`` (checked on each batch and on the worker's housekeeping), and on a
clean stop (``flush``, which the log tail calls when its loop ends).

Exactly once, whatever crashes:

- ``position(partition)`` reports what is *buffered*, so the driver reads on past it; the
  durable checkpoint (``ArchiveState``, a small object under ``<prefix>/_state/``) moves
  only past what is in files. A restart loses the buffer and re-reads it from there.
- A flush first records its range as ``pending`` in the state, then writes one file per
  Hive partition (keys named by the range), then moves the state past the range. After
  a crash in between, the handler buffers exactly that range again and rewrites the same
  keys with the same bytes (new typed columns aside, when a definition changed in
  between) before anything else; a redelivered batch is skipped by
  position like any other read model's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from domain.blobs import BlobNotFound, BlobStore
from domain.events import RecordedEvent
from domain.metrics import MetricCatalog
from domain.ports import EventStore
from projections.archive import (
    PROJECTION,
    ArchiveColumn,
    ArchiveState,
    Rows,
    definition_columns,
    iter_files_of_rows,
    join,
    live_files,
    parquet_bytes,
    parse_key,
    read_table,
    retyped,
    rows_of,
    state_key,
)
from services.engine import FeedBatch

log = logging.getLogger(__name__)

MAX_BYTES = 64 * 2**20
MAX_AGE_SECONDS = 300.0
#: Files a flush stores at once (``ArchiveHandler._put_files``).
PUT_THREADS = 8


@dataclass
class _Partition:
    durable: ArchiveState
    upto: int  # the last position buffered (what ``position`` reports)
    rows: list[Rows] = field(default_factory=list)
    facts: int = 0
    bytes: int = 0
    since: float | None = None  # when the oldest buffered fact arrived (handler's clock)


class ArchiveHandler:
    """See the module docstring."""

    def __init__(
        self,
        blobs: BlobStore,
        prefix: str = "",
        columns: Sequence[ArchiveColumn] = (),
        max_bytes: int = MAX_BYTES,
        max_age_seconds: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        name: str = PROJECTION,
        definitions: EventStore | None = None,
    ) -> None:
        self.blobs = blobs
        self.prefix = prefix.strip("/")
        self.configured = tuple(columns)
        self.columns = self.configured
        # Where metric and gauge definitions are read from: their properties get typed
        # columns too (``definition_columns``), refreshed before each step of the driver.
        self.definitions = definitions
        self._catalog = MetricCatalog()
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self.name = name
        self._partitions: dict[str, _Partition] = {}

    # --- state ------------------------------------------------------------------------

    def state(self, partition: str) -> ArchiveState:
        """The durable checkpoint of ``partition``, as stored."""
        try:
            return ArchiveState.decode(self.blobs.get(state_key(self.prefix, self.name, partition)))
        except BlobNotFound:
            return ArchiveState()

    def _partition(self, partition: str) -> _Partition:
        found = self._partitions.get(partition)
        if found is None:
            durable = self.state(partition)
            found = self._partitions[partition] = _Partition(durable, durable.position)
        return found

    def _save(self, partition: str, state: ArchiveState) -> None:
        self.blobs.put(state_key(self.prefix, self.name, partition), state.encode())

    # --- the engine's handler ------------------------------------------------------------

    def position(self, partition: str) -> int:
        return self._partition(partition).upto

    def prepare(self) -> None:
        if self.definitions is not None and self._catalog.refresh(self.definitions):
            catalog = self._catalog
            self.columns = definition_columns(catalog.metrics.values(), catalog.gauges.values(), self.configured)

    def handle(self, batch: FeedBatch) -> bool:
        part = self._partition(batch.partition)
        if batch.upto <= part.upto:
            return False
        facts = batch.facts_after(part.upto)
        pending = part.durable.pending
        if pending is not None and batch.upto >= pending[1]:
            # Redo the interrupted flush exactly: its range, no more.
            last = pending[1]
            self._buffer(part, [f for f in facts if (f.position or 0) <= last], last)
            self._flush(batch.partition, part)
            facts = [f for f in facts if (f.position or 0) > last]
        self._buffer(part, facts, batch.upto)
        if part.durable.pending is None and (part.bytes >= self.max_bytes or self._old(part)):
            self._flush(batch.partition, part)
        return True

    def _buffer(self, part: _Partition, facts: list[RecordedEvent], upto: int) -> None:
        if facts:
            if part.since is None:
                part.since = self.clock()
            rows = rows_of(facts, self.columns)
            part.rows.append(rows)
            part.facts += len(facts)
            part.bytes += rows.table.nbytes
        part.upto = max(part.upto, upto)

    def _old(self, part: _Partition) -> bool:
        return part.since is not None and self.clock() - part.since >= self.max_age_seconds

    def maintain(self, now: float) -> None:
        for partition, part in list(self._partitions.items()):
            if part.durable.pending is None and self._old(part):
                self._flush(partition, part)

    def close(self) -> None:
        return None  # buffers are written by flush, which a clean stop calls first

    def flush(self) -> None:
        """Write out every buffer (a clean stop, a caught-up worker, the end of a Lambda
        batch): afterwards ``position`` is what is stored. A buffer that cannot be written
        yet (it holds part of an interrupted flush's range, which must be written whole) is
        given back: its partition's position falls back to the stored one, so the driver
        reads it again (and a Lambda batch is not acknowledged)."""
        for partition, part in list(self._partitions.items()):
            if part.durable.pending is None:
                self._flush(partition, part)
            elif part.upto > part.durable.position:
                log.info(
                    "archive %s: %d..%d waits for the rest of an interrupted flush",
                    partition or "log",
                    part.durable.position + 1,
                    part.upto,
                )
                del self._partitions[partition]

    def forget(self) -> None:
        # Buffers go too: the driver re-reads them from the durable checkpoints.
        self._partitions.clear()

    def _flush(self, partition: str, part: _Partition) -> None:
        durable = part.durable
        first, last = durable.position + 1, part.upto
        if last <= durable.position:
            return
        if part.rows:
            if durable.pending is None:
                self._save(partition, ArchiveState(durable.position, (first, last), durable.events_total))
            # Typed columns as the definitions stand now, for facts buffered before a change too.
            rows = [r if r.columns == self.columns else retyped(r, self.columns) for r in part.rows]
            self._put_files(iter_files_of_rows(rows, partition, first, last))
        part.durable = ArchiveState(last, None, durable.events_total + part.facts)
        self._save(partition, part.durable)
        log.debug("archive %s: wrote %d facts of %d..%d", partition or "log", part.facts, first, last)
        part.rows, part.facts, part.bytes, part.since = [], 0, 0, None

    def _put_files(self, files: Iterable[tuple[str, bytes]]) -> None:
        """Store the files ``PUT_THREADS`` at a time while the next ones are encoded: a
        put waits on the disk (an fsync each) or the network (S3), not on the CPU, and a
        sparse flush writes a file per type and hour (168 for a week of one type). Returns
        once every put is done; raises the first that failed (the flush's range stays
        pending, so it is written again whole)."""
        put = self.blobs.put
        with ThreadPoolExecutor(PUT_THREADS, thread_name_prefix="archive-put") as pool:
            puts = [pool.submit(put, join(self.prefix, key), data) for key, data in files]
        for done in puts:
            done.result()


# --- compaction ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compacted:
    folder: str
    merged: str
    removed: tuple[str, ...]
    rows: int


def archive_files(blobs: BlobStore, prefix: str = "", under: str = "") -> list[str]:
    """Every archive file (live or covered) under ``prefix``/``under``."""
    return [k for k in blobs.list(join(prefix, under) if under else prefix) if parse_key(k) is not None]


def compact(blobs: BlobStore, prefix: str, date: str, event_type: str | None = None) -> list[Compacted]:
    """Merge each hour's files of ``date`` (of one type, or every type), one partition at
    a time, into one file named by the union of their ranges: the merged file is written
    first, then the files it covers are deleted. Running it again does nothing new;
    after a crash it finishes the job (covered files are skipped by readers meanwhile)."""
    done: list[Compacted] = []
    keys = archive_files(blobs, prefix)
    groups: dict[tuple[str, str], list[str]] = {}
    for key in keys:
        found = parse_key(key)
        assert found is not None
        if f"/date={date}/" not in f"/{found.folder}/":
            continue
        if event_type is not None and f"/type={event_type}/" not in f"/{found.folder}/":
            continue
        groups.setdefault((found.folder, found.partition), []).append(key)
    for (folder, partition), group in sorted(groups.items()):
        live = live_files(group)
        covered = sorted(set(group) - set(live))
        if len(live) > 1:
            import pyarrow as pa

            ranges = [parse_key(k) for k in live]
            first = min(r.first for r in ranges if r)
            last = max(r.last for r in ranges if r)
            table = pa.concat_tables([read_table(blobs.get(k)) for k in live], promote_options="permissive")
            table = table.sort_by([("occurred_at", "ascending"), ("id", "ascending")])
            merged = f"{folder}/{partition}-{first}-{last}.parquet"
            blobs.put(merged, parquet_bytes(table))
            for key in live + covered:
                blobs.delete(key)
            done.append(Compacted(folder, merged, tuple(live + covered), table.num_rows))
        elif covered:
            for key in covered:
                blobs.delete(key)
            done.append(Compacted(folder, live[0], tuple(covered), 0))
    return done
