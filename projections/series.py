"""Query shaping for series and breakdowns: ranges, zero-filled points, partial buckets,
values derived by aggregation, and period comparison. Pure, except ``read_series`` and
``read_breakdown``, which read through an injected ``ViewStore``.

Ranges. ``last: N`` is the N buckets ending with the one holding ``to`` (exclusive) or
now; ``from`` (inclusive, floored to its bucket) runs to ``to`` (exclusive) or through
the current bucket. At most ``MAX_POINTS`` buckets.

Points. Every bucket of the range has a point; a bucket with no facts has count 0 and
value 0 for count and sum, null for min, max and avg. ``partial`` marks the bucket that
holds now: it is still filling.

Comparison. ``previous[i]`` is the bucket that ``points[i]`` is compared with: ``N``
buckets earlier (PREVIOUS_PERIOD), 7 days earlier (SAME_PERIOD_LAST_WEEK; the same local
days for day buckets), or the same date a year earlier (SAME_PERIOD_LAST_YEAR; 29
February maps to the 28th). A partial bucket is never set against a full one: for the
current bucket the previous value covers only as much of its bucket as has elapsed in
the current one, cut to the minute from finer counters (hours and minutes for a day,
minutes for an hour). Where minute counters are no longer kept (a year back) a day is
cut to the hour and an hour cannot be cut, so its previous value is null; a partial
minute cannot be cut either, so its previous value is null.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from domain.errors import FieldError, ValidationError
from domain.metrics import AVG, COUNT, DAY, HOUR, MAX, MIN, MINUTE, SUM, MetricDefinition
from domain.ports import CounterCell, CounterDelta, ViewStore
from projections.buckets import Bucketing, Retention

MAX_POINTS = 10_000
DEFAULT_LAST = {MINUTE: 60, HOUR: 24, DAY: 30}
MAX_TOP = 1000

PREVIOUS_PERIOD = "previous_period"
SAME_PERIOD_LAST_WEEK = "same_period_last_week"
SAME_PERIOD_LAST_YEAR = "same_period_last_year"
COMPARISONS = (PREVIOUS_PERIOD, SAME_PERIOD_LAST_WEEK, SAME_PERIOD_LAST_YEAR)


@dataclass(frozen=True, slots=True)
class Point:
    bucket: int
    value: float | None
    count: int
    partial: bool


@dataclass(frozen=True, slots=True)
class Totals:
    """Counter cells summed: what a value is derived from."""

    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None

    def add(self, cell: CounterCell | CounterDelta | Totals) -> Totals:
        return Totals(
            self.count + cell.count,
            self.sum + cell.sum,
            cell.min if self.min is None else self.min if cell.min is None else min(self.min, cell.min),
            cell.max if self.max is None else self.max if cell.max is None else max(self.max, cell.max),
        )

    def value(self, aggregation: str, decimals: int | None = None) -> float | None:
        """The aggregation's value; sums, averages, minima and maxima are rounded to
        ``decimals`` places, or to 15 significant digits when None (what a double holds
        exactly: the rest is the noise of adding binary fractions, as in 0.1 + 0.2)."""
        if aggregation == COUNT:
            return float(self.count)
        found: float | None
        if aggregation == SUM:
            found = self.sum
        elif aggregation == MIN:
            found = self.min
        elif aggregation == MAX:
            found = self.max
        elif aggregation == AVG:
            found = self.sum / self.count if self.count else None
        else:
            raise ValueError(f"unknown aggregation {aggregation!r}")
        # JSON has no infinities: a sum that overflowed a double is reported as unknown.
        if found is None or not math.isfinite(found):
            return None
        return round(found, decimals) if decimals is not None else float(f"{found:.15g}")


def _timestamp(field: str, moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValidationError([FieldError(field, "must include a UTC offset, e.g. 2026-03-01T09:00:00Z")])
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class Span:
    """The range a query asks for: from ``start`` (``from``) to ``end`` (``to``, exclusive),
    or the ``last`` N buckets up to ``end`` or now; none given: the resolution's default."""

    start: datetime | None = None
    end: datetime | None = None
    last: int | None = None


def plan_buckets(bucketing: Bucketing, resolution: str, now: float, span: Span = Span()) -> list[int]:
    """The bucket starts a query covers, or ``ValidationError`` naming the argument."""
    start, end, last = span.start, span.end, span.last
    start_ts = _timestamp("from", start)
    end_ts = _timestamp("to", end)
    if last is not None and start_ts is not None:
        raise ValidationError([FieldError("last", "give either last or from, not both")])
    if last is not None and not 1 <= last <= MAX_POINTS:
        raise ValidationError([FieldError("last", f"must be between 1 and {MAX_POINTS}, got {last}")])
    if start_ts is not None and end_ts is not None and start_ts >= end_ts:
        raise ValidationError([FieldError("from", f"must be before to ({start.isoformat()} >= {end.isoformat()})")])  # type: ignore[union-attr]
    try:
        if start_ts is None:
            n = last if last is not None else DEFAULT_LAST[resolution]
            anchor = bucketing.floor(resolution, end_ts - 1e-6 if end_ts is not None else now)
            return _representable(
                bucketing, resolution, bucketing.buckets(resolution, bucketing.shift(resolution, anchor, 1 - n), n)
            )
        first = bucketing.floor(resolution, start_ts)
        stop = end_ts if end_ts is not None else bucketing.end(resolution, bucketing.floor(resolution, now))
        n = bucketing.count(resolution, first, math.ceil(stop))
    except _OUT_OF_RANGE as exc:
        # Dates reach from year 1 to 9999: a range (or its last bucket's end) past either end.
        field = "from" if start is not None else "to" if end is not None else "last"
        raise ValidationError([FieldError(field, f"the range is out of bounds (years 1 to 9999): {exc}")]) from exc
    if n < 1:
        raise ValidationError([FieldError("from", f"is after the current {resolution} bucket: give a later `to` too")])
    if n > MAX_POINTS:
        raise ValidationError(
            [
                FieldError(
                    "from",
                    f"the range holds {n} {resolution} buckets; at most {MAX_POINTS} are allowed:"
                    " narrow it or use a coarser resolution",
                )
            ]
        )
    try:
        return _representable(bucketing, resolution, bucketing.buckets(resolution, first, n))
    except _OUT_OF_RANGE as exc:
        field = "to" if end is not None else "from"
        raise ValidationError([FieldError(field, f"the range is out of bounds (years 1 to 9999): {exc}")]) from exc


#: What date arithmetic raises past year 1 or 9999.
_OUT_OF_RANGE = (OverflowError, ValueError, OSError)


def _representable(bucketing: Bucketing, resolution: str, buckets: list[int]) -> list[int]:
    """``buckets``, once sure that their range and its end can be shown as dates (raises
    one of ``_OUT_OF_RANGE`` otherwise)."""
    bucketing.to_datetime(resolution, buckets[0])
    bucketing.to_datetime(resolution, bucketing.end(resolution, buckets[-1]))
    return buckets


def current_bucket(bucketing: Bucketing, resolution: str, now: float) -> int:
    return bucketing.floor(resolution, now)


def shape_points(
    buckets: list[int],
    cells: Iterable[CounterCell],
    aggregation: str,
    partial_bucket: int | None,
    decimals: int | None = None,
) -> list[Point]:
    """One point per bucket, zero-filled, in bucket order."""
    by_bucket = {cell.bucket: Totals().add(cell) for cell in cells}
    empty = Totals()
    return [
        _point(bucket, by_bucket.get(bucket, empty), aggregation, bucket == partial_bucket, decimals)
        for bucket in buckets
    ]


def _point(bucket: int, totals: Totals, aggregation: str, partial: bool, decimals: int | None = None) -> Point:
    return Point(bucket=bucket, value=totals.value(aggregation, decimals), count=totals.count, partial=partial)


def previous_buckets(bucketing: Bucketing, resolution: str, buckets: list[int], comparison: str) -> list[int]:
    """The bucket each of ``buckets`` is compared with, or ``ValidationError`` naming
    ``compareTo`` when that reaches before year 1."""
    try:
        if comparison == PREVIOUS_PERIOD:
            return _representable(
                bucketing, resolution, [bucketing.shift(resolution, b, -len(buckets)) for b in buckets]
            )
        if comparison == SAME_PERIOD_LAST_WEEK:
            return _representable(bucketing, resolution, [bucketing.week_before(resolution, b) for b in buckets])
        if comparison == SAME_PERIOD_LAST_YEAR:
            return _representable(bucketing, resolution, [bucketing.year_before(resolution, b) for b in buckets])
    except _OUT_OF_RANGE as exc:
        raise ValidationError([FieldError("compareTo", f"the period compared with is before year 1: {exc}")]) from exc
    raise ValidationError([FieldError("compareTo", f"must be one of {', '.join(c.upper() for c in COMPARISONS)}")])


def cut_ranges(start: int, stop: int, minutes_kept: bool) -> list[tuple[str, int, int]] | None:
    """Counter reads covering ``[start, stop)``: whole hours from hour counters, the
    ragged ends from minute counters. Without minute counters, only the whole hours
    (None when there are none: the cut cannot be made)."""
    first_hour = -(-start // 3600) * 3600
    last_hour = stop - stop % 3600
    if not minutes_kept:
        return [(HOUR, first_hour, last_hour)] if first_hour < last_hour else None
    if first_hour >= last_hour:
        return [(MINUTE, start, stop)]
    ranges = [(MINUTE, start, first_hour), (HOUR, first_hour, last_hour), (MINUTE, last_hour, stop)]
    return [r for r in ranges if r[1] < r[2]]


def partial_cut(
    bucketing: Bucketing,
    resolution: str,
    current: int,
    previous: int,
    now: float,
    retention: Retention,
) -> list[tuple[str, int, int]] | None:
    """Reads giving the previous bucket cut to the time elapsed in the current one."""
    if resolution == MINUTE:
        return None
    elapsed = int(now) - current
    stop = previous + elapsed - elapsed % 60
    horizon = retention.horizon(MINUTE, now)
    minutes_kept = horizon is None or previous >= horizon
    return cut_ranges(previous, stop, minutes_kept)


# --- Reading through a view store --------------------------------------------------------


def where_of(metric: MetricDefinition, filters: Iterable[tuple[str, str]]) -> dict[int, str]:
    """Dimension filters as ``{dimension index: value}``, or errors naming ``filter[i]``."""
    where: dict[int, str] = {}
    errors: list[FieldError] = []
    for i, (dimension, value) in enumerate(filters):
        if dimension not in metric.dimensions:
            known = ", ".join(metric.dimensions) or "none"
            errors.append(
                FieldError(
                    f"filter[{i}].dimension",
                    f"{dimension!r} is not a dimension of metric {metric.name!r} (its dimensions: {known})",
                )
            )
            continue
        index = metric.dimensions.index(dimension)
        if index in where and where[index] != value:
            errors.append(FieldError(f"filter[{i}].dimension", f"{dimension!r} is filtered twice"))
        where[index] = value
    if errors:
        raise ValidationError(errors)
    return where


def aggregate_cells(
    cells: Iterable[tuple[int, tuple[str, ...], CounterDelta]],
    where: Mapping[int, str] | None = None,
    group_by: int | None = None,
) -> list[CounterCell]:
    """What ``ViewStore.read_counters`` returns, from raw cells ``(bucket, dimension values,
    delta)`` of one metric and resolution already narrowed to the bucket range: for a view
    store that cannot aggregate itself (DynamoDB reads the items of a key range and calls
    this). Ordered by bucket, then group."""
    wanted = sorted((where or {}).items())
    totals: dict[tuple[int, str | None], Totals] = {}
    for bucket, dims, delta in cells:
        if any(dims[i] != value for i, value in wanted):
            continue
        key = (bucket, dims[group_by] if group_by is not None else None)
        totals[key] = totals.get(key, Totals()).add(delta)
    return [
        CounterCell(bucket, group, t.count, t.sum, t.min, t.max)
        for (bucket, group), t in sorted(totals.items(), key=lambda item: (item[0][0], item[0][1] or ""))
    ]


def _totals(views: ViewStore, key: str, reads: list[tuple[str, int, int]], where: Mapping[int, str]) -> Totals:
    totals = Totals()
    for resolution, start, stop in reads:
        for cell in views.read_counters(key, resolution, start, stop, where):
            totals = totals.add(cell)
    return totals


def read_series(
    views: ViewStore,
    bucketing: Bucketing,
    metric: MetricDefinition,
    resolution: str,
    buckets: list[int],
    where: Mapping[int, str],
    now: float,
    comparison: str | None = None,
    retention: Retention | None = None,
) -> tuple[list[Point], list[Point] | None]:
    """Points of ``buckets`` and, with a comparison, the aligned previous points."""
    partial = current_bucket(bucketing, resolution, now)
    cells = views.read_counters(metric.key, resolution, buckets[0], bucketing.end(resolution, buckets[-1]), where)
    points = shape_points(buckets, cells, metric.aggregation, partial, metric.decimals)
    if comparison is None:
        return points, None
    earlier = previous_buckets(bucketing, resolution, buckets, comparison)
    earlier_cells = views.read_counters(
        metric.key, resolution, min(earlier), bucketing.end(resolution, max(earlier)), where
    )
    by_bucket = {cell.bucket: Totals().add(cell) for cell in earlier_cells}
    previous = []
    for point, bucket in zip(points, earlier, strict=True):
        if not point.partial:
            previous.append(_point(bucket, by_bucket.get(bucket, Totals()), metric.aggregation, False, metric.decimals))
            continue
        reads = partial_cut(bucketing, resolution, point.bucket, bucket, now, retention or Retention())
        if reads is None:
            previous.append(Point(bucket=bucket, value=None, count=0, partial=True))
        else:
            totals = _totals(views, metric.key, reads, where)
            previous.append(_point(bucket, totals, metric.aggregation, True, metric.decimals))
    return points, previous


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    key: str
    value: float
    count: int


def read_breakdown(
    views: ViewStore,
    metric: MetricDefinition,
    dimension: str,
    resolution: str,
    start: int,
    stop: int,
    top: int,
) -> list[BreakdownRow]:
    """The metric over ``[start, stop)`` per value of ``dimension``, largest first."""
    errors = []
    if dimension not in metric.dimensions:
        known = ", ".join(metric.dimensions) or "none"
        errors.append(
            FieldError(
                "dimension", f"{dimension!r} is not a dimension of metric {metric.name!r} (its dimensions: {known})"
            )
        )
    if not 1 <= top <= MAX_TOP:
        errors.append(FieldError("top", f"must be between 1 and {MAX_TOP}, got {top}"))
    if errors:
        raise ValidationError(errors)
    groups: dict[str, Totals] = {}
    for cell in views.read_counters(metric.key, resolution, start, stop, group_by=metric.dimensions.index(dimension)):
        assert cell.group is not None
        groups[cell.group] = groups.get(cell.group, Totals()).add(cell)
    rows = []
    for key, totals in groups.items():
        value = totals.value(metric.aggregation, metric.decimals)
        if value is not None:
            rows.append(BreakdownRow(key=key, value=value, count=totals.count))
    rows.sort(key=lambda row: (-row.value, row.key))
    return rows[:top]
