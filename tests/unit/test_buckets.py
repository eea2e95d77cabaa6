"""Bucket arithmetic: UTC minutes and hours, local days across DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.buckets import Bucketing, Retention


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def test_minute_and_hour_buckets_are_utc() -> None:
    b = Bucketing("Asia/Kolkata")
    assert b.floor("minute", ts("2026-03-01T09:30:59.999+00:00")) == ts("2026-03-01T09:30:00+00:00")
    assert b.floor("hour", ts("2026-03-01T09:59:59+00:00")) == ts("2026-03-01T09:00:00+00:00")
    assert b.to_datetime("hour", ts("2026-03-01T09:00:00+00:00")).utcoffset() == timedelta(0)


def test_days_start_at_local_midnight_with_a_half_hour_offset() -> None:
    b = Bucketing("Asia/Kolkata")
    # 19:00 UTC is 00:30 the next day in India.
    day = b.floor("day", ts("2026-03-01T19:00:00+00:00"))
    assert b.to_datetime("day", day) == datetime(2026, 3, 2, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert day == ts("2026-03-01T18:30:00+00:00")


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2026, 3, 8), 23), (date(2026, 11, 1), 25), (date(2026, 6, 1), 24)],
)
def test_local_days_are_23_24_or_25_hours_around_dst(day: date, hours: int) -> None:
    b = Bucketing("America/New_York")
    start = b.day_start(day)
    assert b.end("day", start) - start == hours * 3600
    assert b.floor("day", b.end("day", start) - 1) == start


def test_a_day_whose_midnight_does_not_exist_starts_at_the_change() -> None:
    # Santiago skipped from 24:00 to 01:00 on 2022-09-11.
    b = Bucketing("America/Santiago")
    start = b.day_start(date(2022, 9, 11))
    local = datetime.fromtimestamp(start, ZoneInfo("America/Santiago"))
    assert (local.date(), local.hour) == (date(2022, 9, 11), 1)
    assert b.floor("day", start - 1) == b.day_start(date(2022, 9, 10))


@settings(max_examples=300)
@given(
    moment=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC)),
    zone=st.sampled_from(["UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe"]),
)
def test_floor_day_matches_the_local_calendar(moment: datetime, zone: str) -> None:
    b = Bucketing(zone)
    start = b.floor("day", moment.timestamp())
    assert start <= moment.timestamp() < b.end("day", start)
    assert datetime.fromtimestamp(start, ZoneInfo(zone)).date() == moment.astimezone(ZoneInfo(zone)).date()


def test_counting_and_listing_buckets() -> None:
    b = Bucketing("America/New_York")
    first = b.day_start(date(2026, 3, 7))
    days = b.buckets("day", first, 3)
    assert [b.to_datetime("day", d).date() for d in days] == [date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 9)]
    assert b.count("day", first, days[-1] + 1) == 3
    assert b.count("hour", ts("2026-03-01T00:00:00+00:00"), ts("2026-03-01T05:00:01+00:00")) == 6


def test_a_year_before_maps_29_february_to_the_28th() -> None:
    b = Bucketing("UTC")
    assert b.year_before("hour", ts("2028-02-29T13:00:00+00:00")) == ts("2027-02-28T13:00:00+00:00")
    assert b.year_before("day", b.day_start(date(2028, 2, 29))) == b.day_start(date(2027, 2, 28))
    assert b.week_before("minute", ts("2026-03-08T12:00:00+00:00")) == ts("2026-03-01T12:00:00+00:00")


def test_a_week_before_is_seven_local_days_across_dst() -> None:
    b = Bucketing("America/New_York")
    monday = b.day_start(date(2026, 3, 9))
    assert b.week_before("day", monday) == b.day_start(date(2026, 3, 2))


def test_an_unknown_time_zone_names_the_setting() -> None:
    with pytest.raises(ValueError, match="PULSE_TIMEZONE"):
        Bucketing("Mars/Olympus")


def test_retention_horizons() -> None:
    retention = Retention()
    now = 1_000_000_000
    assert retention.horizon("minute", now) == now - 8 * 86400  # 7 days and a day of margin
    assert retention.horizon("hour", now) == now - 400 * 86400
    assert retention.horizon("day", now) is None
