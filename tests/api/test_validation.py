"""The event rules at their edges (pure: no store, no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from api.validation import parse_body, parse_events
from domain.errors import FieldError, ValidationError

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def event(**fields: object) -> dict[str, object]:
    return {"type": "sale", "occurredAt": "2026-11-23T11:00:00Z", **fields}


def errors_of(*events: object) -> list[FieldError]:
    with pytest.raises(ValidationError) as caught:
        parse_events(list(events), max_future_seconds=300, now=NOW)
    return caught.value.errors


def fields_of(*events: object) -> set[str]:
    return {error.field for error in errors_of(*events)}


def parse_one(**fields: object):
    (parsed,) = parse_events([event(**fields)], max_future_seconds=300, now=NOW)
    return parsed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T11:00:00Z", datetime(2026, 11, 23, 11, tzinfo=UTC)),
        ("2026-11-23t11:00:00z", datetime(2026, 11, 23, 11, tzinfo=UTC)),
        ("2026-11-23T16:30:00+05:30", datetime(2026, 11, 23, 11, tzinfo=UTC)),
        ("2026-11-23T11:00:00-00:00", datetime(2026, 11, 23, 11, tzinfo=UTC)),
        ("2026-11-23T11:00:00.123456789Z", datetime(2026, 11, 23, 11, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-23T11:00:00.5Z", datetime(2026, 11, 23, 11, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_rfc3339_timestamps_with_an_offset_are_read_as_utc(text: str, expected: datetime) -> None:
    assert parse_one(occurredAt=text).occurred_at == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T11:00:00",  # no offset
        "2026-11-23",
        "2026-11-23 11:00:00Z",
        "20261123T110000Z",
        "2026-02-30T11:00:00Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T11:00:00+0100",
        "yesterday",
        1700000000,
        None,
    ],
)
def test_other_timestamps_are_refused(text: object) -> None:
    (error,) = errors_of(event(occurredAt=text))
    assert error.field == "occurredAt" and error.index == 0


def test_at_most_max_future_seconds_ahead() -> None:
    assert parse_one(occurredAt=(NOW + timedelta(seconds=300)).isoformat())
    (error,) = errors_of(event(occurredAt=(NOW + timedelta(seconds=301)).isoformat()))
    assert "future" in error.message and "300 seconds" in error.message
    # Late events are normal.
    assert parse_one(occurredAt="2001-01-01T00:00:00Z")


def test_the_future_limit_is_a_setting() -> None:
    soon = (NOW + timedelta(seconds=30)).isoformat()
    with pytest.raises(ValidationError):
        parse_events([event(occurredAt=soon)], max_future_seconds=10, now=NOW)


def test_aware_datetimes_from_graphql_are_accepted_and_naive_ones_refused() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    assert parse_one(occurredAt=datetime(2026, 11, 23, 16, 30, tzinfo=india)).occurred_at == NOW - timedelta(hours=1)
    (error,) = errors_of(event(occurredAt=datetime(2026, 11, 23, 11)))
    assert "offset" in error.message


@pytest.mark.parametrize("name", ["a", "sale", "page_view", "stock.level-v2", "a" + "b" * 63])
def test_valid_types(name: str) -> None:
    assert parse_one(type=name).type == name


@pytest.mark.parametrize("name", ["", "Sale", "1sale", "_x", "sale\n", "page view", "a" + "b" * 64, 7, None])
def test_invalid_types(name: object) -> None:
    assert fields_of(event(type=name)) == {"type"}


def test_id_is_generated_when_absent_or_null_and_limited_to_128_characters() -> None:
    generated = {parse_one().id, parse_one(id=None).id}
    assert len(generated) == 2 and all(generated)
    assert parse_one(id="x" * 128).id == "x" * 128
    assert fields_of(event(id="x" * 129)) == {"id"}
    assert fields_of(event(id="")) == {"id"}
    assert fields_of(event(id=12)) == {"id"}


def test_source_is_optional_and_limited_to_128_characters() -> None:
    assert parse_one().source is None
    assert parse_one(source="s" * 128).source == "s" * 128
    assert fields_of(event(source="s" * 129)) == {"source"}


def test_property_values_are_flat_scalars() -> None:
    props = {"s": "x" * 1024, "i": 2**70, "f": -1.5e300, "t": True, "n": None, **{f"k{i}": i for i in range(45)}}
    assert len(props) == 50
    assert dict(parse_one(properties=props).properties) == props
    assert parse_one(properties=None).properties == {}
    assert parse_one().properties == {}


def test_each_bad_property_is_named() -> None:
    errors = errors_of(
        event(properties={"ok": 1, "long": "x" * 1025, "obj": {}, "arr": [], "nan": float("nan"), "inf": float("inf")})
    )
    assert {error.field for error in errors} == {
        "properties.long",
        "properties.obj",
        "properties.arr",
        "properties.nan",
        "properties.inf",
    }


def test_more_than_50_properties_or_not_an_object() -> None:
    assert fields_of(event(properties={f"k{i}": i for i in range(51)})) == {"properties"}
    assert fields_of(event(properties="amount=1")) == {"properties"}


def test_unknown_fields_are_named() -> None:
    assert fields_of(event(timestamp="x", Type="sale")) == {"timestamp", "Type"}


def test_every_event_is_checked_not_just_the_first() -> None:
    errors = errors_of(event(type="X"), event(), "nope", event(occurredAt="later"))
    assert [(error.index, error.field) for error in errors] == [(0, "type"), (2, ""), (3, "occurredAt")]


def test_body_level_problems_have_no_index() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_body({"event": []}, max_future_seconds=300, now=NOW)
    assert {(e.index, e.field) for e in caught.value.errors} == {(None, "events"), (None, "event")}


def test_unpaired_surrogates_are_refused_naming_the_field() -> None:
    # json.loads turns "\ud800" into a lone surrogate that no store can encode.
    errors = errors_of(event(id="a\udfff", source="\ud800", properties={"x": "\ud800", "\udc00": 1, "ok": "😀 café"}))
    assert {error.field for error in errors} == {"id", "source", "properties.x", "properties.\udc00"}
    assert all("surrogate" in error.message for error in errors)
    assert dict(parse_one(properties={"ok": "😀 café"}).properties) == {"ok": "😀 café"}


def test_the_past_limit_is_a_setting_naming_the_field() -> None:
    old = (NOW - timedelta(days=11)).isoformat()
    assert parse_events([event(occurredAt=old)], max_future_seconds=300, now=NOW)  # 0: no bound
    assert parse_events([event(occurredAt=old)], max_future_seconds=300, now=NOW, max_past_days=12)
    with pytest.raises(ValidationError) as raised:
        parse_events([event(occurredAt=old)], max_future_seconds=300, now=NOW, max_past_days=10)
    (error,) = raised.value.errors
    assert error.field == "occurredAt" and "10 days" in error.message and "PULSE_MAX_PAST_DAYS" in error.message


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+14:00", "0001-01-01T05:00:00+05:01"])
def test_instants_before_year_1_in_utc_are_refused_not_a_crash(text: str) -> None:
    (error,) = errors_of(event(occurredAt=text))
    assert error.field == "occurredAt" and "out of range" in error.message
