"""The AWS backend: the events table (its stream is the feed) and the views table, on
DynamoDB or DynamoDB Local; the Streams poller (``pulse worker``) or the Lambda handler
feeds the projection engine.

Its own rules: counters are exact per shard by item guards and rebuilt into generations
behind a fence (``workers.stream_projector``), retention is the items' TTL, and the
definitions state records the day time zone (``DynamoViewStore.ensure_state``).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

from bootstrap.archive import archive_handler
from domain.clock import SYSTEM_CLOCK, Clock
from domain.settings import Settings
from projections.buckets import Bucketing
from projections.recent import RecentEventsProjection
from services.engine import ProjectionEngine, ProjectionHandler, ReadModelHandler
from storage import dynamodb
from storage.dynamodb import DynamoEventStore
from storage.dynamodb_feed import ChangeFeed
from storage.dynamodb_recent import DynamoRecentEvents
from storage.dynamodb_views import DynamoViewStore
from workers.dynamodb_poller import DynamoPoller
from workers.stream_projector import RebuildTiming, StreamProjector, rebuild_task


@dataclass
class DynamoBackend:
    settings: Settings
    events: DynamoEventStore
    views: DynamoViewStore
    recent: DynamoRecentEvents
    timing: RebuildTiming
    name: str = "dynamodb"
    #: The poller reads a stream Lambda may read too: run it only by choice (`pulse serve --worker`).
    worker_beside_server: bool = False
    _projector: StreamProjector | None = field(default=None, repr=False)

    def counters(self) -> StreamProjector:
        """The counters read model (one per backend: it caches the definitions history)."""
        if self._projector is None:
            self._projector = StreamProjector(self.events, self.views, Bucketing(self.settings.timezone))
        return self._projector

    def handlers(self, options=None) -> list[ProjectionHandler]:
        handlers: list[ProjectionHandler] = [self.counters(), ReadModelHandler(RecentEventsProjection(), self.recent)]
        if (archive := archive_handler(self.settings, definitions=self.events)) is not None:
            handlers.append(archive)  # S3 (PULSE_ARCHIVE_BUCKET): the same files, per shard
        return handlers

    def worker(self, engine: ProjectionEngine, options, clock: Clock = SYSTEM_CLOCK) -> DynamoPoller:
        timing = RebuildTiming.from_env(
            os.environ, fence_seconds=options.rebuild_fence_seconds, settle_seconds=options.rebuild_settle_seconds
        )
        self.views.retention = options.retention  # the TTL of the cells it writes
        owner = f"poller-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        projector = self.counters()
        return DynamoPoller(
            engine,
            ChangeFeed.from_settings(self.settings),
            projector,
            read_limit=min(options.batch_size, 1000),
            background=[rebuild_task(projector, timing, owner)],
            closers=[self.close],
            clock=clock,
        )

    def create_tables(self) -> list[str]:
        return create_tables(self.settings)

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
