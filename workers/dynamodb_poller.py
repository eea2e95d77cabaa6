"""The DynamoDB Streams poller: `pulse worker` with the DynamoDB store (local and
container runs; on AWS the Lambda handler does the same job).

Each step lists the shards (every ``shard_refresh_seconds``, and whenever a shard was
read to its end), and reads once from every shard that is ready: not finished, and its
parent finished or no longer listed (trimmed after 24 hours), so a child shard is read
only after its parent, which keeps each item's records in order. Each read (up to
``read_limit`` records) is handed to the projection engine, whose projections keep a
checkpoint per shard in the views table. A closed shard read to its end is marked finished.

Restarts resume from the lowest stored checkpoint of the shard; a batch applied but not
checkpointed is read again and changes nothing (the counters' item guards, the other
read models' checkpoints). A projection that fails a batch makes the shard's reader
resume from the lowest checkpoint, so the batch is read again for it while the others
skip what they have. An expired shard iterator (they live 15 minutes) is renewed from
the checkpoint by ``ShardReader``. When nothing is new the worker sleeps
``idle_seconds``. Background tasks of the backend (the counters' rebuilds for metrics
defined after events exist, ``run_pending_rebuild``) run on their own threads, woken
when the stream carries a change of the definitions. SIGTERM or Ctrl-C stop it after
the batch in hand.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from domain.errors import StoreUnavailable
from domain.events import FACTS_STREAM
from domain.metrics import DEFINITIONS_STREAM
from domain.ports import CheckpointConflict
from services.engine import FeedBatch, ProjectionEngine
from storage.dynamodb_feed import ChangeFeed, ChangeRecord, FeedTrimmed, Shard, ShardReader

log = logging.getLogger(__name__)

READ_LIMIT = 1000  # GetRecords' maximum
IDLE_SECONDS = 0.5
SHARD_REFRESH_SECONDS = 10.0
RETRY_SECONDS = 1.0

#: A task run beside the poller on its own thread until the event is set; the second
#: event is set when the stream carries a change of the metric definitions.
BackgroundTask = Callable[[threading.Event, threading.Event], None]


class ShardLog(Protocol):
    """Which shards were read to their end (the poller's own bookkeeping)."""

    def finished_partitions(self) -> Collection[str]: ...

    def mark_finished(self, partition: str) -> None: ...


def feed_batch(partition: str, records: Sequence[ChangeRecord]) -> FeedBatch:
    """The engine's batch of one shard's records: the events of its inserts (a MODIFY is
    a racing resend, a REMOVE an expiry: neither is a new event)."""
    sequences = [int(record.sequence_number) for record in records]
    events = [r.event for r in records if r.event_name == "INSERT" and r.event is not None]
    return FeedBatch(partition, min(sequences), max(sequences), events)


def changes_definitions(batch: FeedBatch) -> bool:
    return any(event.stream_id == DEFINITIONS_STREAM for event in batch.events if event.stream_id != FACTS_STREAM)


def ready_shards(shards: Sequence[Shard], finished: Collection[str]) -> list[Shard]:
    """The shards to read now, in the lineage order given: not finished, and whose
    parent is finished or not listed any more."""
    listed = {shard.shard_id for shard in shards}
    return [
        shard
        for shard in shards
        if shard.shard_id not in finished
        and (shard.parent_shard_id is None or shard.parent_shard_id not in listed or shard.parent_shard_id in finished)
    ]


class DynamoPoller:
    def __init__(
        self,
        engine: ProjectionEngine,
        feed: ChangeFeed,
        shard_log: ShardLog,
        *,
        read_limit: int = READ_LIMIT,
        idle_seconds: float = IDLE_SECONDS,
        shard_refresh_seconds: float = SHARD_REFRESH_SECONDS,
        background: Sequence[BackgroundTask] = (),
        closers: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.engine = engine
        self.feed = feed
        self.shard_log = shard_log
        self.read_limit = min(read_limit, READ_LIMIT)
        self.idle_seconds = idle_seconds
        self.shard_refresh_seconds = shard_refresh_seconds
        self.background = list(background)
        self.closers = list(closers)
        self._readers: dict[str, ShardReader] = {}
        self._shards: list[Shard] | None = None
        self._listed_at = 0.0
        self._finished: set[str] = set(shard_log.finished_partitions())
        self.definitions_seen = threading.Event()

    # --- one pass ------------------------------------------------------------------------

    def shards(self) -> list[Shard]:
        if self._shards is None or time.monotonic() - self._listed_at > self.shard_refresh_seconds:
            self._shards = self.feed.shards()
            self._listed_at = time.monotonic()
        return self._shards

    def _reader(self, shard_id: str) -> ShardReader:
        reader = self._readers.get(shard_id)
        if reader is None:
            position = self.engine.lowest(shard_id)
            reader = self._readers[shard_id] = self.feed.reader(shard_id, position or None)
        return reader

    def step(self) -> tuple[int, bool]:
        """Prepare the projections, then read each ready shard once. Returns (records
        applied, whether a shard finished)."""
        self.engine.prepare()
        applied = 0
        finished_any = False
        for shard in ready_shards(self.shards(), self._finished):
            if self.engine.behind(shard.shard_id):
                # A projection backs off behind the others: read on only when it can follow.
                self._readers.pop(shard.shard_id, None)
                continue
            reader = self._reader(shard.shard_id)
            try:
                records = reader.read(self.read_limit)
                if records:
                    batch = feed_batch(shard.shard_id, records)
                    if changes_definitions(batch):
                        self.definitions_seen.set()
                    handled = self.engine.handle(batch)
                    applied += len(records)
                    if handled.failed:
                        # Read the batch again for the projections that failed it.
                        self._readers.pop(shard.shard_id, None)
            except BaseException:
                # The reader moved past records that may not be applied: resume from the checkpoint.
                self._readers.pop(shard.shard_id, None)
                raise
            if reader.finished:
                self.shard_log.mark_finished(shard.shard_id)
                self._finished.add(shard.shard_id)
                self._readers.pop(shard.shard_id, None)
                self._shards = None  # list again: its children are ready now
                finished_any = True
        return applied, finished_any

    def catch_up(self) -> int:
        """Apply everything there is; returns records read."""
        total = 0
        while True:
            applied, finished = self.step()
            total += applied
            if not applied and not finished:
                return total

    # --- the worker ----------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, parent_pid: int | None = None) -> None:
        """Poll until ``stop`` is set (or the process ``parent_pid`` is gone); background
        tasks run on their own threads meanwhile."""
        stop = stop or threading.Event()
        threads = [
            threading.Thread(target=task, args=(stop, self.definitions_seen), name="pulse-background", daemon=True)
            for task in self.background
        ]
        for thread in threads:
            thread.start()
        log.info("DynamoDB Streams poller started on %s", self.feed.table_name)
        try:
            while not stop.is_set():
                if parent_pid is not None and os.getppid() != parent_pid:
                    log.info("parent process %d is gone; stopping", parent_pid)
                    return
                try:
                    applied, finished = self.step()
                    if not applied and not finished:
                        stop.wait(self.idle_seconds)
                except FeedTrimmed as exc:
                    log.error(
                        "%s: records were lost before they were projected; the views miss them until the"
                        " metrics are rebuilt. Stopping.",
                        exc,
                    )
                    raise
                except StoreUnavailable as exc:
                    log.warning("store unavailable, retrying in %.0f s: %s", RETRY_SECONDS, exc)
                    stop.wait(RETRY_SECONDS)
                except CheckpointConflict as exc:
                    log.warning("%s; retrying", exc)
                    stop.wait(RETRY_SECONDS)
                except Exception:
                    log.exception("projection step failed; retrying in %.0f s", RETRY_SECONDS)
                    stop.wait(RETRY_SECONDS)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            log.info("DynamoDB Streams poller stopped")

    def close(self) -> None:
        self.feed.close()
        for close in self.closers:
            close()
