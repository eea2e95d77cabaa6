"""The in-memory backend: the test fake. The ports' in-memory adapters
(``storage.memory``), wired as the embedded backend is (a log tail feeding the engine,
the same handlers, the same day time-zone rule). Not for production: nothing outlives the
process, and a `pulse worker` in another process would see none of it.

Its stores are shared per ``settings.db`` name within a process, so two ``bootstrap``
calls of one test (a rig and the app it serves, say) see the same data; ``drop_tables``
forgets them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from bootstrap.positioned import PositionedBackend
from domain.blobs import MemoryBlobStore
from domain.settings import Settings
from services.replay import ReplayUnsupported
from storage.memory import MemoryEventStore, MemoryRecentEvents, MemoryViewStore
from storage.memory_replays import MemoryReplayLedger


@dataclass(frozen=True)
class MemoryDatabase:
    """What one ``settings.db`` name holds."""

    events: MemoryEventStore
    views: MemoryViewStore
    recent: MemoryRecentEvents
    blobs: MemoryBlobStore  # the archive's


_databases: dict[str, MemoryDatabase] = {}
_lock = threading.Lock()
_ledgers: dict[str, MemoryReplayLedger] = {}


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
class MemoryBackend(PositionedBackend):
    """The stores of ``storage.memory``, wired by ``PositionedBackend``."""

    name: str = "memory"
    #: `pulse serve` starts its worker as another process, which would have its own memory.
    worker_beside_server: bool = False
    archive_apart: bool = False  # likewise

    def create_tables(self) -> list[str]:
        return create_tables(self.settings)

    def replay_ledger(self) -> MemoryReplayLedger:
        with _lock:
            return _ledgers.setdefault(self.settings.db, MemoryReplayLedger())

    def replayable(self) -> list[str]:
        return []  # the fake has no second generation to switch to

    def replayer(self, options, clock=None):
        raise ReplayUnsupported("the in-memory store cannot replay; use the sqlite or dynamodb store")

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
        _ledgers.pop(settings.db, None)
