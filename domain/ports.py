"""The ports Pulse's core talks to; adapters in ``storage/`` implement them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from domain.events import Event, FactPage, IngestResult, RecordedEvent


@runtime_checkable
class EventStore(Protocol):
    """Append-only store of facts and aggregate streams."""

    #: Largest event, in the adapter's own measure of a stored item, it accepts.
    max_event_bytes: int

    def ingest(self, events: Sequence[Event]) -> IngestResult:
        """Store facts idempotently by id; the whole batch or nothing.

        Raises ``EventTooLarge`` before writing anything when one event does not fit.
        """

    def append(self, stream_id: str, events: Sequence[Event], expected_version: int) -> int:
        """Append to an aggregate stream that must be at ``expected_version`` (0: new).

        Returns the stream's new version. Raises ``ConcurrencyError`` when another writer
        got there first; nothing is written then.
        """

    def read_stream(self, stream_id: str, after_version: int | None = None) -> list[RecordedEvent]:
        """Events of one aggregate stream in version order, after ``after_version``."""

    def read_facts(self, cursor: str | None = None, limit: int = 1000) -> FactPage:
        """Facts in store order, resuming after ``cursor``; for catch-up and replay."""

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""

    def close(self) -> None:
        """Release connections."""
