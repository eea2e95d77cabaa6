"""The embedded backend: the event log in one SQLite file, the read models in another
beside it (``pulse.views.db``), and a log tail feeding the projection engine.

Its own rules: day buckets follow ``settings.timezone``, so when that changed since the
views were computed they are dropped and projected again from the log; retention prunes
counter cells on the worker's housekeeping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from bootstrap.archive import archive_handler
from domain.clock import SYSTEM_CLOCK, Clock
from domain.settings import Settings
from projections.buckets import Bucketing
from projections.recent import RecentEventsProjection
from services.counters import PositionedCounters
from services.engine import ProjectionEngine, ProjectionHandler, ReadModelHandler
from storage.sqlite import WRITER_LOCK_SUFFIX, SqliteEventStore
from storage.sqlite_recent import SqliteRecentEvents
from storage.sqlite_views import SqliteViewStore, views_path
from workers.log_tail import LogTail

log = logging.getLogger(__name__)


@dataclass
class SqliteBackend:
    settings: Settings
    events: SqliteEventStore
    views: SqliteViewStore
    recent: SqliteRecentEvents
    name: str = "sqlite"
    worker_beside_server: bool = True
    _closed: bool = field(default=False, repr=False)

    def handlers(self, options) -> list[ProjectionHandler]:
        handlers: list[ProjectionHandler] = [
            PositionedCounters(
                self.events, self.views, Bucketing(self.settings.timezone), options.retention, options.batch_size
            ),
            ReadModelHandler(RecentEventsProjection(), self.recent),
        ]
        if (archive := archive_handler(self.settings)) is not None:
            handlers.append(archive)
        return handlers

    def worker(self, engine: ProjectionEngine, options, clock: Clock = SYSTEM_CLOCK) -> LogTail:
        if self.views.reset_if_timezone_changed(self.settings.timezone):
            log.warning("day time zone is now %s: recomputing every read model from the log", self.settings.timezone)
        return LogTail(self.events, engine, batch_size=options.batch_size, clock=clock)

    def create_tables(self) -> list[str]:
        return create_tables(self.settings)

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
