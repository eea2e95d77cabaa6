"""Errors the domain and its adapters raise; the API maps each to one HTTP status."""

from __future__ import annotations

from dataclasses import dataclass


class PulseError(Exception):
    """Base of every error Pulse raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of one item of a request.

    ``index`` is the item's position in the batch (``None`` for a request-level field);
    ``field`` is the wire path, e.g. ``properties.amount``.
    """

    field: str
    message: str
    index: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "message": self.message}


class ValidationError(PulseError):
    """The client sent something invalid; nothing was written."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        first = errors[0] if errors else None
        summary = f"{first.field}: {first.message}" if first else "invalid input"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"invalid input: {summary}{more}")


class EventTooLarge(ValidationError):
    """An event exceeds what the store can hold in one item; nothing was written."""

    def __init__(self, event_id: str, size: int, limit: int, index: int | None = None) -> None:
        self.event_id = event_id
        self.size = size
        self.limit = limit
        super().__init__(
            [
                FieldError(
                    field="properties",
                    index=index,
                    message=(f"event {event_id!r} is {size} bytes once stored; the store's limit is {limit} bytes"),
                )
            ]
        )


class ConcurrencyError(PulseError):
    """An append to an aggregate stream expected a version that is no longer current."""

    def __init__(self, stream_id: str, expected_version: int, actual_version: int | None) -> None:
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        actual = "unknown (another writer won)" if actual_version is None else actual_version
        super().__init__(f"stream {stream_id!r} was expected at version {expected_version} but is at {actual}")


class NotFound(PulseError):
    """The named thing does not exist."""


class StoreUnavailable(PulseError):
    """The store could not be reached or kept refusing writes; safe to retry."""
