"""DynamoDB Local rigs for the DynamoDB projections: fresh tables per test, the real
event store, view store, change feed and poller."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from domain.settings import Settings
from projections.buckets import Bucketing, Retention
from storage.dynamodb import DynamoEventStore
from storage.dynamodb_feed import ChangeFeed
from storage.dynamodb_views import DynamoViewStore
from storage.tables import create_tables, drop_tables
from workers.dynamodb_poller import DynamoPoller
from workers.stream_projector import RebuildTiming

KEEP_ALL = Retention(minute_days=None, hour_days=None, day_days=None)
#: Rebuilds in tests: one process, one clock, sequential ingest; no need to wait long.
QUICK = RebuildTiming(fence_seconds=0.05, settle_seconds=0.05)


@dataclasses.dataclass
class DynamoRig:
    settings: Settings
    events: DynamoEventStore
    views: DynamoViewStore
    feed: ChangeFeed

    def poller(self, timezone: str | None = None, **options) -> DynamoPoller:
        bucketing = Bucketing(timezone or self.settings.timezone)
        return DynamoPoller(self.events, self.views, self.feed, bucketing, timing=QUICK, **options)

    def close(self) -> None:
        self.feed.close()
        self.views.close()
        self.events.close()


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
