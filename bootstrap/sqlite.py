"""The embedded backend: the event log in one SQLite file, the read models in another
beside it (``pulse.views.db``), and a log tail feeding the projection engine.

Its own rules: day buckets follow ``settings.timezone``, so when that changed since the
views were computed they are dropped and projected again from the log; retention prunes
counter cells on the worker's housekeeping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bootstrap.parked import replay_parking
from bootstrap.positioned import PositionedBackend
from domain.clock import SYSTEM_CLOCK, Clock
from domain.replay import LEASE_SECONDS
from domain.settings import Settings
from projections.buckets import Bucketing
from projections.counters import PROJECTION as COUNTERS
from projections.recent import RecentEventsProjection
from services.counters import PositionedCounters
from services.engine import ProjectionHandler, ReadModelHandler
from services.replay import PositionedReplayer
from storage.sqlite import WRITER_LOCK_SUFFIX, SqliteEventStore
from storage.sqlite_generations import TABLES, SqliteGeneration, SqliteGenerations
from storage.sqlite_recent import SqliteRecentEvents
from storage.sqlite_replays import SqliteReplayLedger
from storage.sqlite_views import SqliteViewStore, views_path


@dataclass
class SqliteBackend(PositionedBackend):
    """The stores of ``storage.sqlite`` and ``storage.sqlite_views``, wired by ``PositionedBackend``."""

    name: str = "sqlite"
    worker_beside_server: bool = True
    archive_apart: bool = True
    _closed: bool = field(default=False, repr=False)
    _ledger: SqliteReplayLedger | None = field(default=None, repr=False)

    def create_tables(self) -> list[str]:
        return create_tables(self.settings)

    # --- replays (services.replay): new generations in shadow views files -------------

    def replay_ledger(self) -> SqliteReplayLedger:
        if self._ledger is None:
            self._ledger = SqliteReplayLedger(self.views)
        return self._ledger

    def replayable(self) -> list[str]:
        return sorted(TABLES)

    def replayer(self, options, clock: Clock = SYSTEM_CLOCK) -> PositionedReplayer:
        generations = SqliteGenerations(self.views, self.settings.timezone, prepare_shadow=SqliteRecentEvents)

        def handler_for(projection: str, generation: SqliteGeneration) -> ProjectionHandler:
            # The live read model's own handler, writing into the new generation's file.
            if projection == COUNTERS:
                return PositionedCounters(
                    self.events,
                    generation.shadow,
                    Bucketing(self.settings.timezone),
                    options.retention,
                    clock=options.clock or clock,  # the live worker's retention cut, by the same clock
                )
            return ReadModelHandler(RecentEventsProjection(), SqliteRecentEvents(generation.shadow))

        lease = float(os.environ.get("PULSE_REPLAY_LEASE_SECONDS") or LEASE_SECONDS)
        return PositionedReplayer(
            self.events,
            self.replay_ledger(),
            generations,
            handler_for,
            clock,
            page_size=options.batch_size,
            lease_seconds=lease,
            parking=replay_parking(self),
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.views.close()
            self.events.close()


def open_backend(settings: Settings) -> SqliteBackend:
    """Open (creating if need be) the event db ``settings.db`` and its views db."""
    views = SqliteViewStore.beside(settings.db)
    return SqliteBackend(settings, SqliteEventStore(settings.db), views, SqliteRecentEvents(views))


def create_tables(settings: Settings) -> list[str]:
    SqliteEventStore(settings.db).close()
    SqliteRecentEvents(views := SqliteViewStore.beside(settings.db))
    views.close()
    return [settings.db, views_path(settings.db)]


def drop_tables(settings: Settings) -> None:
    paths = [settings.db]
    if settings.db != ":memory:":
        paths.append(views_path(settings.db))
    for path in paths:
        for suffix in ("", "-wal", "-shm", WRITER_LOCK_SUFFIX):
            Path(path + suffix).unlink(missing_ok=True)
