"""The in-memory backend: the test fake. The ports' in-memory adapters
(``storage.memory``), wired as the embedded backend is (a log tail feeding the engine,
the same handlers, the same day time-zone rule). Not for production: nothing outlives the
process, and a `pulse worker` in another process would see none of it.

Its stores are shared per ``settings.db`` name within a process, so two ``bootstrap``
calls of one test (a rig and the app it serves, say) see the same data; ``drop_tables``
forgets them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from domain.blobs import MemoryBlobStore
from domain.clock import SYSTEM_CLOCK, Clock
from domain.settings import Settings
from projections.buckets import Bucketing
from projections.recent import RecentEventsProjection
from services.counters import PositionedCounters
from services.engine import ProjectionEngine, ProjectionHandler, ReadModelHandler
from storage.memory import MemoryEventStore, MemoryRecentEvents, MemoryViewStore
from workers.log_tail import LogTail

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryDatabase:
    """What one ``settings.db`` name holds."""

    events: MemoryEventStore
    views: MemoryViewStore
    recent: MemoryRecentEvents
    blobs: MemoryBlobStore  # the archive's


_databases: dict[str, MemoryDatabase] = {}
_lock = threading.Lock()


def database(settings: Settings) -> MemoryDatabase:
    """The stores named ``settings.db`` in this process, made on first use."""
    with _lock:
        found = _databases.get(settings.db)
        if found is None:
            views = MemoryViewStore()
            found = _databases[settings.db] = MemoryDatabase(
                MemoryEventStore(), views, MemoryRecentEvents(views), MemoryBlobStore()
            )
        return found


@dataclass
class MemoryBackend:
    settings: Settings
    events: MemoryEventStore
    views: MemoryViewStore
    recent: MemoryRecentEvents
    name: str = "memory"
    #: `pulse serve` starts its worker as another process, which would have its own memory.
    worker_beside_server: bool = False

    def handlers(self, options) -> list[ProjectionHandler]:
        from bootstrap.archive import archive_handler

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
        return None  # the stores stay for the next bootstrap of the same name, until drop_tables


def open_backend(settings: Settings) -> MemoryBackend:
    found = database(settings)
    return MemoryBackend(settings, found.events, found.views, found.recent)


def create_tables(settings: Settings) -> list[str]:
    database(settings)
    return [f"memory:{settings.db}"]


def drop_tables(settings: Settings) -> None:
    with _lock:
        _databases.pop(settings.db, None)
