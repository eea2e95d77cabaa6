"""The recent-events feed as the API serves it: validated arguments, plain values."""

from __future__ import annotations

from domain.access import Principal, require
from domain.errors import FieldError, ValidationError
from domain.events import EVENT_TYPE, RecordedEvent
from domain.ports import ALL_TYPES, RecentEventsReader, recent_marker

#: The most a caller may ask for at once.
MAX_LIMIT = 500


def check(event_type: str | None, limit: int) -> None:
    """Raise ``ValidationError`` naming ``type`` or ``limit`` when they are unusable."""
    errors = []
    if event_type is not None and not EVENT_TYPE.match(event_type):
        errors.append(FieldError("type", f"{event_type[:80]!r} is not an event type ({EVENT_TYPE.pattern})"))
    if not 1 <= limit <= MAX_LIMIT:
        errors.append(FieldError("limit", f"must be 1 to {MAX_LIMIT}, got {limit}"))
    if errors:
        raise ValidationError(errors)


def recent_events(
    principal: Principal, reader: RecentEventsReader, event_type: str | None, limit: int
) -> list[RecordedEvent]:
    """The newest facts (of ``event_type``, or of every type), newest first. Needs ``read``."""
    require(principal, "read")
    check(event_type, limit)
    return reader.recent_events(event_type, limit)


def marker(event_type: str | None) -> str:
    """The change marker a subscription to this feed waits on."""
    return recent_marker(event_type or ALL_TYPES)
