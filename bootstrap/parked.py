"""Opens the parked-events store of a backend, where its projections' checkpoints live:
the views db (SQLite), the views table (DynamoDB), memory for the test fake."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from domain.parked import ParkedEvents
from storage.memory_parked import MemoryParkedEvents

if TYPE_CHECKING:
    from bootstrap import Pulse
    from services.parked import ParkedService
    from services.replay_parking import ReplayParking

# The fake's stores, one per in-memory view store (so per settings.db, as bootstrap.memory).
_memory: weakref.WeakKeyDictionary[Any, MemoryParkedEvents] = weakref.WeakKeyDictionary()


def open_parked(backend: Any) -> ParkedEvents:
    """The parked events of ``backend`` (a ``bootstrap.Backend``)."""
    if backend.name == "sqlite":
        from storage.sqlite_parked import SqliteParkedEvents

        return SqliteParkedEvents(backend.views.connection, backend.views.path)
    if backend.name == "dynamodb":
        from storage.dynamodb_parked import DynamoParkedEvents

        return DynamoParkedEvents.from_settings(backend.settings)
    found = _memory.get(backend.views)
    if found is None:
        found = _memory[backend.views] = MemoryParkedEvents()
    return found


def parked_service(pulse: Pulse) -> ParkedService:
    """The ``services.parked.ParkedService`` of a ``bootstrap.Pulse``, built once per Pulse
    (it holds the backend's projection handlers, to retry events through them)."""
    from services.parked import ParkedService

    # The handlers of an engine of this Pulse, so that closing the Pulse stops their threads.
    return pulse.cached(
        "parked_service",
        lambda: ParkedService(pulse.parked, list(pulse.engine().handlers), pulse.backend.replay_ledger()),
    )


def replay_parking(backend: Any) -> ReplayParking:
    """How ``backend``'s replays treat a poison event: retried, then parked, as live."""
    from services.replay_parking import ReplayParking

    settings = backend.settings
    return ReplayParking(open_parked(backend), settings.projection_retries, settings.projection_retry_seconds)
