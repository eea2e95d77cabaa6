"""DynamoDB Local rigs for the DynamoDB projections: fresh tables per test, the real
event store, view store, change feed and poller."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from bootstrap import create_tables, drop_tables
from domain.settings import Settings
from projections.buckets import Bucketing, Retention
from projections.recent import RecentEventsProjection
from services.counters import Rebuilt
from services.engine import ProjectionEngine, ReadModelHandler
from storage.dynamodb import DynamoEventStore
from storage.dynamodb_feed import ChangeFeed, ChangeRecord
from storage.dynamodb_recent import DynamoRecentEvents
from storage.dynamodb_views import DynamoViewStore
from workers.dynamodb_poller import DynamoPoller, feed_batch
from workers.dynamodb_rebuild import RebuildTiming, run_pending_rebuild
from workers.stream_projector import Applied, StreamProjector

KEEP_ALL = Retention(minute_days=None, hour_days=None, day_days=None)
#: Rebuilds in tests: one process, one clock, sequential ingest; no need to wait long.
QUICK = RebuildTiming(fence_seconds=0.05, settle_seconds=0.05)


@dataclasses.dataclass
class DynamoRig:
    settings: Settings
    events: DynamoEventStore
    views: DynamoViewStore
    feed: ChangeFeed

    def poller(self, timezone: str | None = None, **options) -> RigPoller:
        return RigPoller(self, Bucketing(timezone or self.settings.timezone), **options)

    def close(self) -> None:
        self.feed.close()
        self.views.close()
        self.events.close()


class RigPoller:
    """The poller as `pulse worker` builds it (every read model on one engine), plus the
    counters' rebuilds run in line, as the worker's background thread would."""

    def __init__(
        self, rig: DynamoRig, bucketing: Bucketing, recent: DynamoRecentEvents | None = None, **options
    ) -> None:
        self.rig = rig
        self.projector = StreamProjector(rig.events, rig.views, bucketing)
        self.recent = recent or DynamoRecentEvents.from_settings(rig.settings, rig.views)
        self.engine = ProjectionEngine([self.projector, ReadModelHandler(RecentEventsProjection(), self.recent)])
        self.poller = DynamoPoller(self.engine, rig.feed, self.projector, **options)

    def __getattr__(self, name: str):
        return getattr(self.poller, name)

    def apply(self, shard_id: str, records: list[ChangeRecord]) -> Applied:
        """The counters of one batch of records, as the engine hands them over."""
        return self.projector.apply(feed_batch(shard_id, records))

    def rebuild(self, stop=None) -> Rebuilt | None:
        return run_pending_rebuild(
            self.rig.events, self.rig.views, self.projector.bucketing, self.projector.history, "rig", QUICK, stop
        )

    def catch_up(self, rebuild: bool = True) -> int:
        total = 0
        while True:
            total += self.poller.catch_up()
            if rebuild and self.rebuild() is not None:
                continue
            return total


def open_rig(settings: Settings) -> DynamoRig:
    create_tables(settings)
    # Keep every cell: DynamoDB Local runs TTL for real, and the workloads lie in the past.
    views = DynamoViewStore.from_settings(settings, KEEP_ALL, fence_seconds=QUICK.fence_seconds)
    views.ensure_state(settings.timezone)  # what every worker does on start
    return DynamoRig(
        settings=settings,
        events=DynamoEventStore.from_settings(settings),
        views=views,
        feed=ChangeFeed.from_settings(settings),
    )


@pytest.fixture
def make_dynamo_rig(dynamodb_settings: Settings) -> Iterator[Callable[..., DynamoRig]]:
    """Rigs on fresh tables (several per test, e.g. one per hypothesis example)."""
    rigs: list[DynamoRig] = []

    def make(timezone: str = "UTC") -> DynamoRig:
        settings = dataclasses.replace(
            dynamodb_settings, table_prefix=f"{dynamodb_settings.table_prefix}-{len(rigs)}", timezone=timezone
        )
        rig = open_rig(settings)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()
        drop_tables(rig.settings)


@pytest.fixture
def rig(make_dynamo_rig: Callable[..., DynamoRig]) -> DynamoRig:
    return make_dynamo_rig()
