"""The DynamoDB Streams poller: `pulse worker` with the DynamoDB store (local and
container runs; on AWS the Lambda handler does the same job).

Each step lists the shards (every ``shard_refresh_seconds``, and whenever a shard was
read to its end), and reads once from every shard that is ready: not finished, and its
parent finished or no longer listed (trimmed after 24 hours), so a child shard is read
only after its parent, which keeps each item's records in order. Each read (up to
``read_limit`` records) is projected and applied by ``StreamProjector``; the checkpoint
per shard lives in the views table. A closed shard read to its end is marked finished.

Restarts resume from the stored checkpoints; a batch applied but not checkpointed is
read again and changes nothing (the items' guards). An expired shard iterator (they
live 15 minutes) is renewed from the checkpoint by ``ShardReader``. When nothing is
new the worker sleeps ``idle_seconds``. A second thread runs rebuilds for metrics
defined after events exist (``run_pending_rebuild``), woken when the stream carries a
change of the definitions. SIGTERM or Ctrl-C stop it after the batch in hand.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Collection, Sequence

from domain.errors import StoreUnavailable
from domain.ports import CheckpointConflict, EventStore
from domain.settings import Settings
from projections.buckets import Bucketing, Retention
from storage.dynamodb_feed import ChangeFeed, FeedTrimmed, Shard, ShardReader
from storage.dynamodb_views import DynamoViewStore
from workers.projection_runner import Rebuilt
from workers.stream_projector import RebuildTiming, StreamProjector, run_pending_rebuild

log = logging.getLogger(__name__)

READ_LIMIT = 1000  # GetRecords' maximum
IDLE_SECONDS = 0.5
SHARD_REFRESH_SECONDS = 10.0
REBUILD_CHECK_SECONDS = 5.0
RETRY_SECONDS = 1.0


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
        events: EventStore,
        views: DynamoViewStore,
        feed: ChangeFeed,
        bucketing: Bucketing,
        *,
        read_limit: int = READ_LIMIT,
        idle_seconds: float = IDLE_SECONDS,
        shard_refresh_seconds: float = SHARD_REFRESH_SECONDS,
        timing: RebuildTiming | None = None,
    ) -> None:
        self.events = events
        self.views = views
        self.feed = feed
        self.bucketing = bucketing
        self.read_limit = min(read_limit, READ_LIMIT)
        self.idle_seconds = idle_seconds
        self.shard_refresh_seconds = shard_refresh_seconds
        self.timing = timing or RebuildTiming()
        self.owner = f"poller-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.projector = StreamProjector(events, views, bucketing)
        self._readers: dict[str, ShardReader] = {}
        self._shards: list[Shard] | None = None
        self._listed_at = 0.0
        self._finished: set[str] = set(views.finished_partitions(self.projector.projection_name))
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
            checkpoint = self.views.checkpoint(self.projector.projection_name, shard_id)
            reader = self._readers[shard_id] = self.feed.reader(shard_id, checkpoint.position or None)
        return reader

    def step(self) -> tuple[int, bool]:
        """Read each ready shard once. Returns (records applied, whether a shard finished)."""
        applied = 0
        finished_any = False
        for shard in ready_shards(self.shards(), self._finished):
            reader = self._reader(shard.shard_id)
            try:
                records = reader.read(self.read_limit)
                if records:
                    result = self.projector.apply(shard.shard_id, records)
                    applied += result.records
                    if result.definitions_changed:
                        self.definitions_seen.set()
            except BaseException:
                # The reader moved past records that may not be applied: resume from the checkpoint.
                self._readers.pop(shard.shard_id, None)
                raise
            if reader.finished:
                self.views.mark_finished(self.projector.projection_name, shard.shard_id)
                self._finished.add(shard.shard_id)
                self._readers.pop(shard.shard_id, None)
                self.projector.forget_finished()
                self._shards = None  # list again: its children are ready now
                finished_any = True
        return applied, finished_any

    def rebuild(self, stop: threading.Event | None = None) -> Rebuilt | None:
        return run_pending_rebuild(
            self.events, self.views, self.bucketing, self.projector.history, self.owner, self.timing, stop
        )

    def catch_up(self, rebuild: bool = True) -> int:
        """Apply everything there is (and run pending rebuilds); returns records applied."""
        total = 0
        while True:
            applied, finished = self.step()
            total += applied
            if applied or finished:
                continue
            if rebuild and self.rebuild() is not None:
                continue
            return total

    # --- the worker ----------------------------------------------------------------------

    def _rebuild_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.rebuild(stop)
            except Exception:
                if stop.is_set():
                    return
                log.exception("rebuild failed; retrying in %.0f s", REBUILD_CHECK_SECONDS)
            deadline = time.monotonic() + REBUILD_CHECK_SECONDS
            while not stop.is_set() and not self.definitions_seen.is_set() and time.monotonic() < deadline:
                stop.wait(0.2)
            self.definitions_seen.clear()

    def run(self, stop: threading.Event | None = None) -> None:
        """Poll until ``stop`` is set; rebuilds run on a second thread meanwhile."""
        stop = stop or threading.Event()
        rebuilder = threading.Thread(target=self._rebuild_loop, args=(stop,), name="pulse-rebuild", daemon=True)
        rebuilder.start()
        log.info("DynamoDB Streams poller started on %s", self.feed.table_name)
        try:
            while not stop.is_set():
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
            rebuilder.join(timeout=30)
            log.info("DynamoDB Streams poller stopped")

    def close(self) -> None:
        self.feed.close()
        self.views.close()
        self.events.close()


def open_dynamodb_poller(
    settings: Settings,
    retention: Retention | None = None,
    read_limit: int = READ_LIMIT,
    timing: RebuildTiming | None = None,
) -> DynamoPoller:
    """The poller for ``settings`` (store dynamodb); ``pulse tables create`` made its tables."""
    from storage.dynamodb import DynamoEventStore

    timing = timing or RebuildTiming.from_env(os.environ)
    views = DynamoViewStore.from_settings(settings, retention, fence_seconds=timing.fence_seconds)
    return DynamoPoller(
        DynamoEventStore.from_settings(settings),
        views,
        ChangeFeed.from_settings(settings),
        Bucketing(settings.timezone),
        read_limit=read_limit,
        timing=timing,
    )
