"""The event envelope and its recorded form.

Facts (ingested business events) and aggregate events (metric definitions, API keys,
dashboards) share one envelope; facts are checked to be flat at the API edge, aggregate
events may carry nested JSON in ``properties``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from domain.micros import epoch_micros, from_epoch_micros

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


class _RecordedFields(NamedTuple):
    id: str
    type: str
    occurred_micros: int  # epoch microseconds
    properties: Mapping[str, Any]
    source: str | None
    stream_id: str
    version: int | None
    position: int | None
    received_micros: int  # epoch microseconds
    properties_json: str | None = None


class RecordedEvent(_RecordedFields):
    """An event as the store holds it.

    ``position`` is the store's global order where it has one (SQLite) or the change
    feed's sequence number (DynamoDB Streams); ``version`` is the 1-based version within
    an aggregate stream and ``None`` for facts.

    It is the lean row that replay and catch-up read: times are kept as integer epoch
    microseconds (``occurred_micros``, ``received_micros``) and ``occurred_at`` and
    ``received_at`` build their ``datetime`` only when asked, so a worker reading a million
    facts builds none. ``properties_json`` is the properties' JSON text as the store keeps it
    (when the adapter has it), so the archive writes it without encoding it again; it takes
    no part in equality. Built from datetimes (``RecordedEvent(id, type, occurred_at, ...)``)
    or, by adapters on their hot path, from integers (``RecordedEvent.at_micros``).
    """

    __slots__ = ()

    def __new__(
        cls,
        id: str,
        type: str,
        occurred_at: datetime,
        properties: Mapping[str, Any],
        source: str | None,
        stream_id: str,
        version: int | None,
        position: int | None,
        received_at: datetime,
        properties_json: str | None = None,
    ) -> RecordedEvent:
        return tuple.__new__(
            cls,
            (
                id,
                type,
                epoch_micros(occurred_at),
                properties,
                source,
                stream_id,
                version,
                position,
                epoch_micros(received_at),
                properties_json,
            ),
        )

    @classmethod
    def at_micros(
        cls,
        id: str,
        type: str,
        occurred_micros: int,
        properties: Mapping[str, Any],
        source: str | None,
        stream_id: str,
        version: int | None,
        position: int | None,
        received_micros: int,
        properties_json: str | None = None,
    ) -> RecordedEvent:
        """The event with its times as epoch microseconds (no ``datetime`` built)."""
        fields = (id, type, occurred_micros, properties, source, stream_id, version, position, received_micros)
        return tuple.__new__(cls, (*fields, properties_json))

    @property
    def occurred_at(self) -> datetime:
        return from_epoch_micros(self[2])

    @property
    def received_at(self) -> datetime:
        return from_epoch_micros(self[8])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordedEvent):
            return NotImplemented
        return self[:9] == other[:9]

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self[:9])

    def __repr__(self) -> str:
        return (
            f"RecordedEvent(id={self.id!r}, type={self.type!r}, occurred_at={self.occurred_at.isoformat()},"
            f" properties={dict(self.properties)!r}, source={self.source!r}, stream_id={self.stream_id!r},"
            f" version={self.version!r}, position={self.position!r})"
        )

    @property
    def event(self) -> Event:
        return Event(
            id=self.id,
            type=self.type,
            occurred_at=self.occurred_at,
            properties=self.properties,
            source=self.source,
        )


#: What makes two events with one id the same event: type, instant (epoch µs), source and
#: canonical JSON of properties (``payload``).
Payload = tuple[str, int, str | None, str]


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1.0 and 1 are the same JSON number
    if isinstance(value, Mapping):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def payload(type_: str, occurred_micros: int, source: str | None, properties: Mapping[str, Any]) -> Payload:
    """The comparable payload of an event: properties as JSON with sorted keys and integral
    numbers written alike, so key order or ``1`` vs ``1.0`` do not make a resend differ."""
    text = json.dumps(_canonical(dict(properties)), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (type_, occurred_micros, source, text)


def event_payload(event: Event) -> Payload:
    return payload(event.type, epoch_micros(event.occurred_at), event.source, event.properties)


def conflicting_ids(
    ids: Sequence[str],
    duplicate: Sequence[bool],
    sent: Callable[[int], Payload],
    stored: Mapping[str, Payload],
) -> tuple[str, ...]:
    """The ids of the duplicates (in batch order) whose payload ``sent(index)`` differs from
    the one ``stored`` under their id (the first of the batch for a repeat within it)."""
    return tuple(
        event_id
        for index, (event_id, repeated) in enumerate(zip(ids, duplicate, strict=True))
        if repeated and event_id in stored and sent(index) != stored[event_id]
    )


@dataclass(frozen=True, slots=True)
class IngestResult:
    """Outcome of ingesting a batch of facts, one entry per event sent, in order.

    ``duplicate[i]`` is true when event ``i`` was already stored, or repeats an earlier
    id of the same batch; it was then not stored again. ``conflict_ids`` are the ids of
    the duplicates whose payload (type, occurredAt, source or properties) differs from the
    stored event's, one entry per such event sent: they were not stored either, the stored
    event stands, and the sender should know.
    """

    ids: tuple[str, ...]
    duplicate: tuple[bool, ...]
    conflict_ids: tuple[str, ...] = ()

    @property
    def conflicts(self) -> int:
        return len(self.conflict_ids)

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
