"""The event envelope and its recorded form.

Facts (ingested business events) and aggregate events (metric definitions, API keys,
dashboards) share one envelope; facts are checked to be flat at the API edge, aggregate
events may carry nested JSON in ``properties``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

# Facts live in one logical stream; aggregates each have their own.
FACTS_STREAM = "$facts"

#: What an event type may be: checked at ingest and where metrics name an event type.
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)


def new_event_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(UTC)


def _frozen(properties: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(properties or {}))


@dataclass(frozen=True, slots=True)
class Event:
    """What a producer sends: immutable once built."""

    type: str
    occurred_at: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_event_id)
    source: str | None = None

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")
        # Normalise to UTC so equal instants compare and serialise equally.
        object.__setattr__(self, "occurred_at", self.occurred_at.astimezone(UTC))
        object.__setattr__(self, "properties", _frozen(self.properties))


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as the store holds it.

    ``position`` is the store's global order where it has one (SQLite) or the change
    feed's sequence number (DynamoDB Streams); ``version`` is the 1-based version within
    an aggregate stream and ``None`` for facts.
    """

    id: str
    type: str
    occurred_at: datetime
    properties: Mapping[str, Any]
    source: str | None
    stream_id: str
    version: int | None
    position: int | None
    received_at: datetime

    @property
    def event(self) -> Event:
        return Event(
            id=self.id,
            type=self.type,
            occurred_at=self.occurred_at,
            properties=self.properties,
            source=self.source,
        )


@dataclass(frozen=True, slots=True)
class IngestResult:
    """Outcome of ingesting a batch of facts, one entry per event sent, in order.

    ``duplicate[i]`` is true when event ``i`` was already stored, or repeats an earlier
    id of the same batch; it was then not stored again.
    """

    ids: tuple[str, ...]
    duplicate: tuple[bool, ...]

    @property
    def duplicates(self) -> int:
        return sum(self.duplicate)

    @property
    def accepted(self) -> int:
        return len(self.ids) - self.duplicates


@dataclass(frozen=True, slots=True)
class FactPage:
    """One page of facts read in store order; ``cursor`` resumes after the last one."""

    events: tuple[RecordedEvent, ...]
    cursor: str | None
