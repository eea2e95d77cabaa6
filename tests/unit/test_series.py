"""Series shaping: ranges, zero-fill, partial buckets, values by aggregation, and
comparison alignment so a partial bucket is never set against a full one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from domain import metrics as defs
from domain.errors import ValidationError
from domain.events import FACTS_STREAM, RecordedEvent
from domain.ports import CounterCell
from projections import series
from projections.buckets import Bucketing, Retention
from projections.counters import MetricsProjection
from storage.sqlite_views import SqliteViewStore

UTC_BUCKETS = Bucketing("UTC")
# 2026-11-23 10:25:30 UTC, a Monday.
NOW = datetime(2026, 11, 23, 10, 25, 30, tzinfo=UTC).timestamp()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def field_of(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return exc.value.errors[0].field


# --- Ranges ------------------------------------------------------------------------------


def test_last_n_buckets_end_with_the_current_one() -> None:
    buckets = series.plan_buckets(UTC_BUCKETS, "hour", NOW, series.Span(last=3))
    assert [datetime.fromtimestamp(b, UTC).hour for b in buckets] == [8, 9, 10]


def test_last_n_buckets_before_to() -> None:
    buckets = series.plan_buckets(UTC_BUCKETS, "hour", NOW, series.Span(end=at("2026-11-23T06:00:00+00:00"), last=2))
    assert [datetime.fromtimestamp(b, UTC).hour for b in buckets] == [4, 5]


def test_from_is_floored_and_to_is_exclusive() -> None:
    buckets = series.plan_buckets(
        UTC_BUCKETS,
        "minute",
        NOW,
        series.Span(start=at("2026-11-23T10:00:45+00:00"), end=at("2026-11-23T10:03:00+00:00")),
    )
    assert [datetime.fromtimestamp(b, UTC).minute for b in buckets] == [0, 1, 2]


def test_from_alone_runs_through_the_current_bucket() -> None:
    buckets = series.plan_buckets(UTC_BUCKETS, "hour", NOW, series.Span(start=at("2026-11-23T07:10:00+00:00")))
    assert [datetime.fromtimestamp(b, UTC).hour for b in buckets] == [7, 8, 9, 10]


def test_day_ranges_follow_the_local_calendar() -> None:
    paris = Bucketing("Europe/Paris")
    buckets = series.plan_buckets(paris, "day", NOW, series.Span(start=at("2026-10-24T12:00:00+02:00"), last=None))
    days = [paris.to_datetime("day", b) for b in buckets]
    assert days[0].date() == date(2026, 10, 24) and days[-1].date() == date(2026, 11, 23)
    assert days[1].utcoffset() == timedelta(hours=2) and days[2].utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"last": 0}, "last"),
        ({"last": 10_001}, "last"),
        ({"last": 5, "start": at("2026-11-23T00:00:00+00:00")}, "last"),
        ({"start": at("2026-11-23T10:00:00+00:00"), "end": at("2026-11-23T09:00:00+00:00")}, "from"),
        ({"start": at("2026-11-23T10:00:00+00:00"), "end": at("2026-11-23T10:00:00+00:00")}, "from"),
        ({"start": at("2026-01-01T00:00:00+00:00")}, "from"),  # 466,000 minutes
        ({"start": datetime(2026, 11, 23, 9)}, "from"),  # no offset: ambiguous
        ({"end": datetime(2026, 11, 23, 9), "last": 3}, "to"),
    ],
)
def test_bad_ranges_name_the_argument(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        series.plan_buckets(UTC_BUCKETS, "minute", NOW, series.Span(**kwargs))
    assert field_of(exc) == field


# --- Points ------------------------------------------------------------------------------


def test_points_are_zero_filled_and_the_current_bucket_is_partial() -> None:
    buckets = series.plan_buckets(UTC_BUCKETS, "hour", NOW, series.Span(last=3))
    cells = [CounterCell(buckets[1], None, 2, 30.0, 10.0, 20.0), CounterCell(buckets[2], None, 1, 5.0, 5.0, 5.0)]
    partial = series.current_bucket(UTC_BUCKETS, "hour", NOW)
    by = {agg: series.shape_points(buckets, cells, agg, partial) for agg in defs.AGGREGATIONS}
    assert [p.count for p in by["count"]] == [0, 2, 1]
    assert [p.value for p in by["count"]] == [0.0, 2.0, 1.0]
    assert [p.value for p in by["sum"]] == [0.0, 30.0, 5.0]
    assert [p.value for p in by["min"]] == [None, 10.0, 5.0]
    assert [p.value for p in by["max"]] == [None, 20.0, 5.0]
    assert [p.value for p in by["avg"]] == [None, 15.0, 5.0]
    assert [p.partial for p in by["sum"]] == [False, False, True]


def test_an_overflowed_sum_is_null_not_an_error() -> None:
    totals = series.Totals(2, float("inf"), 1.0, 1e308)
    assert totals.value("sum") is None and totals.value("max") == 1e308


# --- Comparison --------------------------------------------------------------------------


def test_previous_buckets_per_comparison() -> None:
    buckets = series.plan_buckets(UTC_BUCKETS, "hour", NOW, series.Span(last=3))
    previous = series.previous_buckets(UTC_BUCKETS, "hour", buckets, series.PREVIOUS_PERIOD)
    assert [b - p for b, p in zip(buckets, previous, strict=True)] == [3 * 3600] * 3
    week = series.previous_buckets(UTC_BUCKETS, "hour", buckets, series.SAME_PERIOD_LAST_WEEK)
    assert [b - p for b, p in zip(buckets, week, strict=True)] == [7 * 86400] * 3
    year = series.previous_buckets(UTC_BUCKETS, "hour", buckets, series.SAME_PERIOD_LAST_YEAR)
    assert datetime.fromtimestamp(year[0], UTC) == datetime(2025, 11, 23, 8, tzinfo=UTC)


def test_previous_period_of_days_spans_whole_local_days_across_dst() -> None:
    ny = Bucketing("America/New_York")
    now = datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp()
    buckets = series.plan_buckets(ny, "day", now, series.Span(last=3))  # 8 (23 h), 9, 10 March
    previous = series.previous_buckets(ny, "day", buckets, series.PREVIOUS_PERIOD)
    assert [ny.to_datetime("day", p).date() for p in previous] == [date(2026, 3, 5), date(2026, 3, 6), date(2026, 3, 7)]


def test_a_partial_hour_is_compared_with_the_same_minutes_of_the_previous_hour() -> None:
    current = UTC_BUCKETS.floor("hour", NOW)
    previous = current - 3600
    reads = series.partial_cut(UTC_BUCKETS, "hour", current, previous, NOW, Retention())
    assert reads == [("minute", previous, previous + 25 * 60)]


def test_a_partial_day_is_cut_from_hours_and_minutes() -> None:
    kolkata = Bucketing("Asia/Kolkata")  # days start at hh:30 UTC
    now = datetime(2026, 11, 23, 10, 25, 30, tzinfo=UTC).timestamp()
    current = kolkata.floor("day", now)
    previous = kolkata.shift("day", current, -1)
    reads = series.partial_cut(kolkata, "day", current, previous, now, Retention())
    elapsed = int(now) - current  # 15 h 55 min 30 s
    stop = previous + elapsed - 30
    assert reads == [
        ("minute", previous, previous + 1800),
        ("hour", previous + 1800, stop - stop % 3600),
        ("minute", stop - stop % 3600, stop),
    ]


def test_without_minute_counters_a_day_is_cut_to_the_hour_and_an_hour_not_at_all() -> None:
    current_day = UTC_BUCKETS.floor("day", NOW)
    year_ago = UTC_BUCKETS.year_before("day", current_day)
    assert series.partial_cut(UTC_BUCKETS, "day", current_day, year_ago, NOW, Retention()) == [
        ("hour", year_ago, year_ago + 10 * 3600)
    ]
    current_hour = UTC_BUCKETS.floor("hour", NOW)
    hour_year_ago = UTC_BUCKETS.year_before("hour", current_hour)
    assert series.partial_cut(UTC_BUCKETS, "hour", current_hour, hour_year_ago, NOW, Retention()) is None
    assert series.partial_cut(UTC_BUCKETS, "minute", 0, 0, NOW, Retention()) is None


def sale(n: int, occurred: datetime, amount: float, **props: object) -> RecordedEvent:
    return RecordedEvent(
        id=f"s{n}",
        type="sale",
        occurred_at=occurred,
        properties={"amount": amount, **props},
        source=None,
        stream_id=FACTS_STREAM,
        version=None,
        position=n,
        received_at=occurred,
    )


@pytest.fixture
def views(tmp_path: Path):
    store = SqliteViewStore(tmp_path / "pulse.views.db")
    yield store
    store.close()


def test_read_series_compares_the_partial_hour_with_the_same_elapsed_minutes(views: SqliteViewStore) -> None:
    revenue = defs.validate_metric("revenue", "sale", "sum", "amount", ["store"])
    facts = [
        sale(1, at("2026-11-23T07:15:00+00:00"), 3, store="a"),  # compared with 09:00, in full
        sale(2, at("2026-11-23T08:10:00+00:00"), 10, store="a"),  # within the first 25 minutes of 08:00
        sale(3, at("2026-11-23T08:40:00+00:00"), 100, store="a"),  # after them: not compared
        sale(4, at("2026-11-23T09:20:00+00:00"), 50, store="a"),
        sale(5, at("2026-11-23T10:05:00+00:00"), 7, store="a"),  # the current, partial hour
        sale(6, at("2026-11-23T10:06:00+00:00"), 1000, store="b"),  # filtered out below
    ]
    changes = MetricsProjection([revenue], [], UTC_BUCKETS).project(facts)
    views.apply("metrics", "", changes, after=0, upto=6, definitions_version=0)
    buckets = series.plan_buckets(UTC_BUCKETS, "hour", NOW, series.Span(last=2))
    points, previous = series.read_series(
        views, UTC_BUCKETS, revenue, "hour", buckets, {0: "a"}, NOW, series.PREVIOUS_PERIOD
    )
    assert [(p.value, p.count, p.partial) for p in points] == [(50.0, 1, False), (7.0, 1, True)]
    assert previous is not None
    assert [(p.value, p.count, p.partial) for p in previous] == [(3.0, 1, False), (10.0, 1, True)]
    assert [datetime.fromtimestamp(p.bucket, UTC).hour for p in previous] == [7, 8]


def test_breakdown_orders_by_value_and_names_bad_arguments(views: SqliteViewStore) -> None:
    revenue = defs.validate_metric("revenue", "sale", "sum", "amount", ["store", "category"])
    facts = [
        sale(1, at("2026-11-23T09:10:00+00:00"), 10, store="a", category="tea"),
        sale(2, at("2026-11-23T09:40:00+00:00"), 100, store="b", category="tea"),
        sale(3, at("2026-11-23T10:05:00+00:00"), 7, store="a"),
    ]
    views.apply("metrics", "", MetricsProjection([revenue], [], UTC_BUCKETS).project(facts), 0, 3, 0)
    day = UTC_BUCKETS.floor("day", NOW)
    rows = series.read_breakdown(views, revenue, "store", "day", day, day + 86400, top=10)
    assert [(r.key, r.value, r.count) for r in rows] == [("b", 100.0, 1), ("a", 17.0, 2)]
    rows = series.read_breakdown(views, revenue, "category", "day", day, day + 86400, top=1)
    assert [(r.key, r.value) for r in rows] == [("tea", 110.0)]
    with pytest.raises(ValidationError) as exc:
        series.read_breakdown(views, revenue, "colour", "day", day, day + 86400, top=10)
    assert field_of(exc) == "dimension"
    with pytest.raises(ValidationError) as exc:
        series.read_breakdown(views, revenue, "store", "day", day, day + 86400, top=0)
    assert field_of(exc) == "top"


def test_money_sums_read_as_a_person_expects(views: SqliteViewStore) -> None:
    """Float sums of decimal amounts carry binary noise (0.1 + 0.2 = 0.30000000000000004):
    values read rounded to the metric's decimals, or to 15 significant digits without them."""
    amounts = [223.25, 361.05, 115.15, 472.69, 450.81, 16.26, 13.7]
    facts = [sale(n, at("2026-11-23T09:10:00+00:00"), amount, store="a") for n, amount in enumerate(amounts, 1)]
    assert sum(amounts) == 1652.9099999999999  # the noise this test is about
    day = UTC_BUCKETS.floor("day", NOW)
    plain = defs.validate_metric("revenue", "sale", "sum", "amount", ["store"])
    cents = defs.validate_metric("revenue", "sale", "sum", "amount", ["store"], decimals=2)
    basket = defs.validate_metric("revenue", "sale", "avg", "amount", ["store"], decimals=1)
    views.apply("metrics", "", MetricsProjection([plain], [], UTC_BUCKETS).project(facts), 0, len(facts), 0)
    buckets = series.plan_buckets(UTC_BUCKETS, "day", NOW, series.Span(last=1))
    for metric, expected in ((plain, 1652.91), (cents, 1652.91), (basket, 236.1)):
        points, _ = series.read_series(views, UTC_BUCKETS, metric, "day", buckets, {}, NOW, None)
        assert points[0].value == expected
        rows = series.read_breakdown(views, metric, "store", "day", day, day + 86400, top=1)
        assert rows[0].value == expected


def test_filters_must_name_dimensions_of_the_metric() -> None:
    revenue = defs.validate_metric("revenue", "sale", "sum", "amount", ["store", "category"])
    assert series.where_of(revenue, [("category", "tea")]) == {1: "tea"}
    with pytest.raises(ValidationError) as exc:
        series.where_of(revenue, [("store", "a"), ("colour", "red")])
    assert field_of(exc) == "filter[1].dimension"


def test_aggregating_raw_cells_gives_what_the_sqlite_store_computes(views: SqliteViewStore) -> None:
    """The pure aggregation a store without GROUP BY (DynamoDB) uses agrees with SQL."""
    revenue = defs.validate_metric("revenue", "sale", "sum", "amount", ["store", "category"])
    facts = [
        sale(
            i,
            at("2026-11-23T08:00:00+00:00") + timedelta(minutes=7 * i),
            i % 13 - 3,
            store="ab"[i % 2],
            category="xyz"[i % 3],
        )
        for i in range(1, 60)
    ]
    changes = MetricsProjection([revenue], [], UTC_BUCKETS).project(facts)
    views.apply("metrics", "", changes, 0, 59, 0)
    for resolution in ("minute", "hour", "day"):
        raw = [(b, d, delta) for (m, r, b, d), delta in changes.counters.items() if (m, r) == ("revenue", resolution)]
        for where, group in (({}, None), ({0: "a"}, None), ({}, 1), ({1: "y"}, 0), ({0: "b", 1: "x"}, None)):
            assert series.aggregate_cells(raw, where, group) == views.read_counters(
                "revenue", resolution, 0, 2**40, where, group
            ), (resolution, where, group)
