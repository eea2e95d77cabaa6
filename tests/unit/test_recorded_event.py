"""The lean recorded event: integer times, datetimes only when asked, and the same value
whichever way it was built."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from domain.events import FACTS_STREAM, RecordedEvent
from domain.micros import epoch_micros

PARIS_WINTER = timezone(timedelta(hours=1))
AT = datetime(2026, 3, 29, 2, 30, 0, 123456, tzinfo=PARIS_WINTER)  # an awkward instant, off UTC


def test_built_from_datetimes_or_from_micros_it_is_the_same_event() -> None:
    received = AT + timedelta(seconds=3)
    from_datetimes = RecordedEvent("e1", "sale", AT, {"amount": 2}, "pos", FACTS_STREAM, None, 7, received)
    occurred, arrived = epoch_micros(AT), epoch_micros(received)
    props, text = {"amount": 2}, '{"amount":2}'
    from_micros = RecordedEvent.at_micros("e1", "sale", occurred, props, "pos", FACTS_STREAM, None, 7, arrived, text)
    assert from_datetimes == from_micros
    assert from_micros.occurred_at == AT and from_micros.occurred_at.tzinfo == UTC
    assert from_micros.received_at == received
    assert from_micros.occurred_micros == epoch_micros(AT)  # exact to the microsecond
    assert from_micros.event.occurred_at == AT and from_micros.event.properties == {"amount": 2}


def test_events_differing_in_any_field_but_the_stored_text_differ() -> None:
    base = RecordedEvent.at_micros("e1", "sale", 10, {"a": 1}, None, FACTS_STREAM, None, 1, 20)
    assert base == base._replace(properties_json='{"a":1}')
    for changed in (
        base._replace(id="e2"),
        base._replace(type="refund"),
        base._replace(occurred_micros=11),
        base._replace(properties={"a": 2}),
        base._replace(position=2),
        base._replace(received_micros=21),
    ):
        assert changed != base
