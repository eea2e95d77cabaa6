"""The AWS backend: the events table (its stream is the feed) and the views table, on
DynamoDB or DynamoDB Local; the Streams poller (``pulse worker``) or the Lambda handler
feeds the projection engine.

Its own rules: counters are exact per shard by item guards and rebuilt into generations
behind a fence (``workers.dynamodb_rebuild``), retention is the items' TTL, and the
definitions state records the day time zone (``DynamoViewStore.ensure_state``).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

from bootstrap.alerts import alerts_handler
from bootstrap.archive import archive_handler
from bootstrap.parked import open_parked, replay_parking
from domain.clock import SYSTEM_CLOCK, Clock
from domain.replay import LEASE_SECONDS
from domain.settings import Settings
from projections.buckets import Bucketing
from projections.counters import PROJECTION
from projections.recent import PROJECTION as RECENT
from projections.recent import RecentEventsProjection
from services.engine import ProjectionEngine, ProjectionHandler, ReadModelHandler
from storage import dynamodb
from storage.dynamodb import DynamoEventStore
from storage.dynamodb_base import Table, make_client
from storage.dynamodb_feed import ChangeFeed
from storage.dynamodb_recent import DynamoRecentEvents
from storage.dynamodb_replays import DynamoReplayLedger
from storage.dynamodb_views import DynamoViewStore
from workers.dynamodb_poller import DynamoPoller
from workers.dynamodb_rebuild import REBUILD_PAGE, RebuildTiming, rebuild_task
from workers.dynamodb_recent_replay import DynamoRecentReplayer, DynamoReplayers
from workers.dynamodb_replay import DynamoReplayer
from workers.stream_projector import StreamProjector


@dataclass
class DynamoBackend:
    settings: Settings
    events: DynamoEventStore
    views: DynamoViewStore
    recent: DynamoRecentEvents
    timing: RebuildTiming
    name: str = "dynamodb"
    #: `pulse serve` runs the Streams poller beside gunicorn, as on SQLite; `--no-worker` when a
    #: Lambda reads the stream instead (a second reader of each shard only doubles the reads and
    #: writes: the items' guards keep the counts exact).
    worker_beside_server: bool = True
    #: The Streams poller leases shards per process; the archive stays on its engine.
    archive_apart: bool = False
    _projector: StreamProjector | None = field(default=None, repr=False)
    _ledger: DynamoReplayLedger | None = field(default=None, repr=False)

    def counters(self) -> StreamProjector:
        """The counters read model (one per backend: it caches the definitions history)."""
        if self._projector is None:
            self._projector = StreamProjector(self.events, self.views, Bucketing(self.settings.timezone))
            self._projector.parked = open_parked(self)  # a retry of what a replay's scan parked
        return self._projector

    def handlers(self, options=None) -> list[ProjectionHandler]:
        counters = self.counters()
        handlers: list[ProjectionHandler] = [
            counters,
            ReadModelHandler(RecentEventsProjection(), self.recent),
            # After the counters: it evaluates the values they have just applied.
            alerts_handler(self.events, self.views, self.settings, counters.position, getattr(options, "clock", None)),
        ]
        if (archive := archive_handler(self.settings, definitions=self.events)) is not None:
            handlers.append(archive)  # S3 (PULSE_ARCHIVE_BUCKET): the same files, per shard
        return handlers

    def worker(self, engine: ProjectionEngine, options, clock: Clock = SYSTEM_CLOCK) -> DynamoPoller:
        timing = RebuildTiming.from_env(
            os.environ, fence_seconds=options.rebuild_fence_seconds, settle_seconds=options.rebuild_settle_seconds
        )
        self.views.retention = options.retention  # the TTL of the cells it writes
        self.views.clock = options.clock or clock  # "now" of the retention cut of the cells it writes
        owner = f"poller-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        projector = self.counters()
        return DynamoPoller(
            engine,
            ChangeFeed.from_settings(self.settings),
            projector,
            read_limit=min(options.batch_size, 1000),
            background=[rebuild_task(projector, timing, owner, ledger=self.replay_ledger())],
            closers=[self.close],
            clock=clock,
        )

    def create_tables(self) -> list[str]:
        return create_tables(self.settings)

    # --- replays (workers.dynamodb_replay): a new generation of the counters' items ------

    def replay_ledger(self) -> DynamoReplayLedger:
        if self._ledger is None:
            self._ledger = DynamoReplayLedger(
                Table(make_client(self.settings), self.settings.views_table), self.views.bump_markers
            )
        return self._ledger

    def replayable(self) -> list[str]:
        return sorted([PROJECTION, RECENT])

    def replayer(self, options, clock: Clock = SYSTEM_CLOCK) -> DynamoReplayers:
        timing = RebuildTiming.from_env(
            os.environ, fence_seconds=options.rebuild_fence_seconds, settle_seconds=options.rebuild_settle_seconds
        )
        lease = float(os.environ.get("PULSE_REPLAY_LEASE_SECONDS") or LEASE_SECONDS)
        page = min(options.batch_size, REBUILD_PAGE)
        parking = replay_parking(self)
        counters = DynamoReplayer(
            self.counters(), self.replay_ledger(), timing, clock, page_size=page, lease_seconds=lease, parking=parking
        )
        recent = DynamoRecentReplayer(
            self.events, self.recent, self.views, self.replay_ledger(), clock, parking, page, lease_seconds=lease
        )
        return DynamoReplayers(counters, recent)

    def close(self) -> None:
        self.views.close()
        self.events.close()


def open_backend(settings: Settings) -> DynamoBackend:
    """Open the tables ``pulse tables create`` made (``settings.table_prefix``)."""
    timing = RebuildTiming.from_env(os.environ)
    views = DynamoViewStore.from_settings(settings, fence_seconds=timing.fence_seconds)
    return DynamoBackend(
        settings,
        DynamoEventStore.from_settings(settings),
        views,
        DynamoRecentEvents.from_settings(settings, views),
        timing,
    )


def create_tables(settings: Settings) -> list[str]:
    return dynamodb.create_tables(settings)


def drop_tables(settings: Settings) -> None:
    dynamodb.drop_tables(settings)
