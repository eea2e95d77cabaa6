"""Parked events: events a projection could not apply after its retries, set aside so
the rest of the log goes on (Marten's dead-letter events, KurrentDB's parked messages).

The engine (``services.engine``) parks an event once the projection raised on it
``PULSE_PROJECTION_RETRIES`` times; an operator lists, retries or drops it
(``pulse parked``, GraphQL ``parkedEvents`` / ``retryParked``). A parked record keeps the
event itself, so a retry needs nothing from the log (a DynamoDB stream record is gone
after 24 h).

A retry applies the event to its projection exactly once through the projection's own
checkpoint rule: it is handed to the projection as a batch of its own partition,
``retry_partition(event_id)``, so the store moves that partition's checkpoint with the
changes in one step. A second retry (or a racing one) finds the checkpoint there and
changes nothing; the parked record is deleted afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from domain.events import RecordedEvent

#: Partitions of a projection's checkpoints that hold retried parked events, not the log's.
RETRY_PARTITION_PREFIX = "parked:"


def retry_partition(event_id: str) -> str:
    """The checkpoint partition a retry of ``event_id`` moves (exactly once)."""
    return f"{RETRY_PARTITION_PREFIX}{event_id}"


def is_retry_partition(partition: str) -> bool:
    return partition.startswith(RETRY_PARTITION_PREFIX)


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    """One event a projection could not apply."""

    projection: str
    partition: str
    event: RecordedEvent
    error: str
    attempts: int
    first_failure: float  # epoch seconds
    last_failure: float  # epoch seconds

    @property
    def event_id(self) -> str:
        return self.event.id

    @property
    def position(self) -> int:
        return self.event.position or 0

    def failed_again(self, error: str, at: float) -> ParkedEvent:
        return replace(self, error=error, attempts=self.attempts + 1, last_failure=at)


class ParkedEvents(Protocol):
    """Where parked events are kept (beside the projections' checkpoints)."""

    def park(self, parked: ParkedEvent) -> None:
        """Keep ``parked``; parking the same projection and event again replaces it,
        keeping the earlier first failure and adding the attempts."""

    def get(self, projection: str, event_id: str) -> ParkedEvent | None: ...

    def list(self, projection: str | None = None) -> list[ParkedEvent]:
        """Parked events (of ``projection``, or all), by projection then position."""

    def counts(self) -> dict[str, int]:
        """How many events each projection has parked (projections with none left out)."""

    def drop(self, projection: str, event_id: str) -> bool:
        """Forget a parked event; False when it was not parked."""


def merged(existing: ParkedEvent | None, parked: ParkedEvent) -> ParkedEvent:
    """What ``ParkedEvents.park`` stores when ``existing`` was parked already."""
    if existing is None:
        return parked
    return replace(
        parked,
        attempts=existing.attempts + parked.attempts,
        first_failure=min(existing.first_failure, parked.first_failure),
    )
