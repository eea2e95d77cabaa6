"""The rules an ingested event must meet, shared by REST and GraphQL (one set of rules).

Wire names are camelCase. ``parse_body`` (a JSON body) and ``parse_events`` (NDJSON lines,
GraphQL input) check a whole batch with one marshmallow schema, collect every problem
of every event as ``FieldError(index, field, message)`` with the wire path of the field
(``properties.amount``), and raises one ``ValidationError``; otherwise it returns
``domain.events.Event`` values ready for ``EventStore.ingest``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import RAISE, Schema, fields
from marshmallow import ValidationError as SchemaError

from domain.errors import FieldError, ValidationError
from domain.events import EVENT_TYPE, EVENT_TYPE_PATTERN, Event, new_event_id, utc_now

MAX_EVENTS = 1000
MAX_BODY_BYTES = 1024 * 1024
MAX_PROPERTIES = 50
MAX_STRING_VALUE = 1024
MAX_ID_LENGTH = 128
MAX_SOURCE_LENGTH = 128

# RFC 3339 date-time; "T"/"Z" may be lowercase. The offset is optional here only so that
# its absence gets its own message below.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?")
_RFC3339_EXAMPLE = "2026-11-23T12:00:00Z"


# Each check takes the wire value and returns the clean value or raises _Invalid. They run
# in one plain pass per batch (see EventList): marshmallow's per-field machinery costs
# ~40 µs per event, more than the whole ingest budget.


class _Invalid(Exception):
    def __init__(self, message: str | dict[str, str]) -> None:
        self.message = message


def _check_id(value: Any, batch: _Batch) -> str:
    if value is None:
        return new_event_id()
    return _check_string(value, MAX_ID_LENGTH, "the event's unique id; omit it to have one generated")


def _check_source(value: Any, batch: _Batch) -> str | None:
    if value is None:
        return None
    return _check_string(value, MAX_SOURCE_LENGTH, "who sent it, e.g. pos-store-12")


def _check_string(value: Any, max_length: int, what: str) -> str:
    if type(value) is not str:
        raise _Invalid(f"must be a string ({what}); got {_json_kind(value)}")
    if not 0 < len(value) <= max_length:
        raise _Invalid(f"must be 1 to {max_length} characters ({what}); got {len(value)}")
    if not value.isascii() and (problem := _not_unicode(value)):
        raise _Invalid(problem)
    return value


def _not_unicode(text: str) -> str | None:
    """Why ``text`` is not valid Unicode, if it is not: JSON's "\\ud800" escapes can make an
    unpaired surrogate, which no store can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains an unpaired UTF-16 surrogate at character {exc.start}; text must be valid Unicode"
    return None


def _check_type(value: Any, batch: _Batch) -> str:
    if type(value) is not str:
        raise _Invalid(f'must be a string such as "sale"; got {_json_kind(value)}')
    # fullmatch, not re.match with "$", which would let a trailing newline through.
    if not EVENT_TYPE.fullmatch(value):
        raise _Invalid(
            f"must match {EVENT_TYPE_PATTERN}: a lowercase letter, then up to 63 lowercase letters, digits,"
            f" '_', '.' or '-'; got {value!r}"
        )
    return value


def _check_occurred_at(value: Any, batch: _Batch) -> datetime:
    if type(value) is str and _RFC3339.fullmatch(value):
        try:
            # Python 3.11 reads any number of fraction digits and a lowercase "t", not a lowercase "z".
            moment = datetime.fromisoformat(value[:-1] + "Z" if value[-1] == "z" else value)
        except ValueError as exc:
            raise _Invalid(f"{value!r} is not a valid date and time: {exc}") from None
    elif isinstance(value, datetime):  # GraphQL's DateTime scalar has parsed it already
        moment = value
    else:
        got = repr(value) if isinstance(value, str) else _json_kind(value)
        raise _Invalid(f"must be an RFC 3339 timestamp with an offset, e.g. {_RFC3339_EXAMPLE}; got {got}")
    if moment.tzinfo is None:
        shown = value if isinstance(value, str) else moment.isoformat()
        raise _Invalid(f"must include a UTC offset (Z or +hh:mm), e.g. {_RFC3339_EXAMPLE}; got {shown!r}")
    try:
        # The instant in UTC: year 1 at +14:00 is still year 0 there, which no date holds.
        moment.astimezone(UTC)
    except OverflowError:
        shown = value if isinstance(value, str) else moment.isoformat()
        raise _Invalid(f"{shown} is out of range: dates run from year 1 to 9999 in UTC") from None
    if batch.earliest_allowed is not None and moment < batch.earliest_allowed:
        shown = value if isinstance(value, str) else moment.isoformat()
        raise _Invalid(
            f"{shown} is too far in the past: at most {batch.max_past_days} days before the server's clock"
            " (PULSE_MAX_PAST_DAYS)"
        )
    if moment > batch.latest_allowed:
        shown = value if isinstance(value, str) else moment.isoformat()
        raise _Invalid(
            f"{shown} is too far in the future: at most {batch.max_future_seconds} seconds ahead of the server's clock"
        )
    return moment


def _check_properties(value: Any, batch: _Batch) -> dict[str, Any]:
    if value is None:
        return _NO_PROPERTIES
    if type(value) is not dict:
        raise _Invalid(f"must be an object of property names to values; got {_json_kind(value)}")
    if len(value) > MAX_PROPERTIES:
        raise _Invalid(f"has {len(value)} keys; at most {MAX_PROPERTIES} are allowed")
    problems: dict[str, str] = {}
    for key, item in value.items():
        kind = type(item)
        if not key.isascii() and (problem := _not_unicode(key)):
            problems[key] = f"the property name {problem}"
        # Exact types: bool is not a number here (JSON true is a boolean, not 1).
        elif item is None or kind is bool or kind is int:
            continue
        elif kind is str:
            if len(item) > MAX_STRING_VALUE:
                problems[key] = f"is {len(item)} characters long; at most {MAX_STRING_VALUE} are allowed"
            elif not item.isascii() and (problem := _not_unicode(item)):
                problems[key] = problem
        elif kind is float:
            if not math.isfinite(item):
                problems[key] = f"must be a finite number; got {item}"
        elif kind is dict or kind is list:
            problems[key] = (
                f"is {_json_kind(item)}; properties are flat: each value is a string, number, boolean or null"
            )
        else:
            problems[key] = f"must be a string, number, boolean or null; got {_json_kind(item)}"
    if problems:
        raise _Invalid(problems)
    return value


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# Wire name -> (check, message when required and absent; None when optional). An absent
# or null optional field means: a generated id, no source, no properties.
_EVENT_FIELDS = {
    "id": (_check_id, None),
    "type": (_check_type, 'is required: what happened, e.g. "sale"'),
    "occurredAt": (_check_occurred_at, f"is required: when it happened, e.g. {_RFC3339_EXAMPLE}"),
    "source": (_check_source, None),
    "properties": (_check_properties, None),
}
_EVENT_FIELD_NAMES = frozenset(_EVENT_FIELDS)
_UNKNOWN_EVENT_FIELD = f"unknown field; an event has {', '.join(_EVENT_FIELDS)}"
_NO_PROPERTIES: dict[str, Any] = {}


class _Batch:
    """What every event of one batch is checked against: one clock reading for the batch."""

    __slots__ = ("earliest_allowed", "latest_allowed", "max_future_seconds", "max_past_days")

    def __init__(self, now: datetime, max_future_seconds: int, max_past_days: int = 0) -> None:
        self.max_future_seconds = max_future_seconds
        self.latest_allowed = now + timedelta(seconds=max_future_seconds)
        self.max_past_days = max_past_days
        # 0: no bound but the calendar's.
        self.earliest_allowed = now - timedelta(days=max_past_days) if max_past_days else None

    def event(self, item: Any) -> Event | dict[str, str]:
        """The event, or its problems by wire path."""
        # Fast path for the usual valid event: the same checks, without collecting.
        if type(item) is dict and _EVENT_FIELD_NAMES.issuperset(item):
            try:
                return Event(
                    id=_check_id(item.get("id"), self),
                    type=_check_type(item["type"], self),
                    occurred_at=_check_occurred_at(item["occurredAt"], self),
                    source=_check_source(item.get("source"), self),
                    properties=_check_properties(item.get("properties"), self),
                )
            except (KeyError, _Invalid):
                pass  # find every problem below
        return self._event_or_problems(item)

    def _event_or_problems(self, item: Any) -> Event | dict[str, str]:
        if type(item) is not dict:
            return {"": f"each event must be a JSON object; got {_json_kind(item)}"}
        problems: dict[str, str] = {}
        clean: dict[str, Any] = {}
        for name, (check, required) in _EVENT_FIELDS.items():
            value = item.get(name)
            if value is None and required is not None and name not in item:
                problems[name] = required
                continue
            try:
                clean[name] = check(value, self)
            except _Invalid as exc:
                if isinstance(exc.message, dict):
                    problems.update({f"{name}.{key}": message for key, message in exc.message.items()})
                else:
                    problems[name] = exc.message
        for key in item:
            if key not in _EVENT_FIELDS:
                problems[key] = _UNKNOWN_EVENT_FIELD
        if problems:
            return problems
        return Event(
            id=clean["id"],
            type=clean["type"],
            occurred_at=clean["occurredAt"],
            source=clean["source"],
            properties=clean["properties"],
        )


class EventList(fields.Field):
    """The ``events`` array: every event checked in one pass, every problem kept by index."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> list[Event]:
        if type(value) is not list:
            raise SchemaError(f"must be an array of events; got {_json_kind(value)}")
        if not value:
            raise SchemaError(f"no events sent; send 1 to {MAX_EVENTS} events")
        if len(value) > MAX_EVENTS:
            raise SchemaError(f"holds {len(value)} events; at most {MAX_EVENTS} per request")
        batch: _Batch = self.parent.batch  # type: ignore[union-attr]
        events: list[Event] = []
        problems: dict[int, dict[str, str]] = {}
        for index, item in enumerate(value):
            result = batch.event(item)
            if type(result) is dict:
                problems[index] = result
            else:
                events.append(result)  # type: ignore[arg-type]
        if problems:
            raise SchemaError(problems)  # type: ignore[arg-type]
        return events


class EventBatchSchema(Schema):
    """A request body ``{"events": [...]}``. Built per batch: it carries the batch's clock."""

    events = EventList(
        required=True,
        error_messages={"required": "is required: an array of events", "null": "must be an array of events"},
    )

    class Meta:
        unknown = RAISE

    error_messages = {  # noqa: RUF012 (marshmallow's class-level override)
        "unknown": 'unknown field; the body is {"events": [...]}',
        "type": 'the body must be a JSON object: {"events": [...]}',
    }

    def __init__(self, *, now: datetime, max_future_seconds: int, max_past_days: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch = _Batch(now, max_future_seconds, max_past_days)


def parse_body(body: Any, max_future_seconds: int, now: datetime | None = None, max_past_days: int = 0) -> list[Event]:
    """Validate a request body ``{"events": [...]}``; every problem of every event is
    reported at once in one ``ValidationError``. ``max_past_days`` (0: none) bounds how
    old ``occurredAt`` may be."""
    schema = EventBatchSchema(now=now or utc_now(), max_future_seconds=max_future_seconds, max_past_days=max_past_days)
    try:
        return schema.load(body)["events"]
    except SchemaError as exc:
        raise ValidationError(_field_errors(exc.messages)) from None


def parse_events(
    items: list[Any], max_future_seconds: int, now: datetime | None = None, max_past_days: int = 0
) -> list[Event]:
    """Validate a list of events (NDJSON lines, GraphQL input) by the same rules."""
    return parse_body({"events": items}, max_future_seconds, now, max_past_days)


def _field_errors(messages: Any) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(messages, dict):
        return [FieldError(field="", message=str(messages))]
    for key, value in messages.items():
        if key == "events" and isinstance(value, dict):
            for index, problems in sorted(value.items()):
                errors.extend(
                    FieldError(field=path, message=message, index=index) for path, message in problems.items()
                )
            continue
        field = "" if key == "_schema" else key
        for message in value if isinstance(value, list) else [value]:
            errors.append(FieldError(field=field, message=str(message)))
    return errors
