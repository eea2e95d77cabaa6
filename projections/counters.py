"""The counters projection: a batch of facts in, ``ViewChanges`` out. Pure.

For each metric whose event type and filters a fact matches, the fact adds to one cell
per resolution: ``(metric key, resolution, bucket, dimension values)`` holding count, sum,
min and max of the metric's value. Every fact also adds to the built-in count of its
event type. Cells are pre-aggregated over the whole batch, so a batch becomes one write
per distinct cell: one upsert in SQLite, one conditional ``ADD`` per item in DynamoDB.

The hot path works column-wise over the batch (the lean rows' integer times, one
``Counter`` or one dict step per fact and metric) at minute resolution; hour and day
cells are rolled up from the minute cells once per batch (sums and counts add, min and
max combine), which is exact because every hour and local-day boundary is a minute
boundary.

Facts whose value property is missing or not a number are not counted by metrics that
aggregate a value (sum, min, max, avg): their count is the number of values, so avg is
sum / count. Count metrics count every matching fact. A value property that is present
(not null) but not a number is not lost silently: the batch counts it in the metric's
``SKIPPED`` cell, unless the metric parses numeric strings and it is a plain decimal.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any

from domain.events import RecordedEvent
from domain.metrics import (
    COUNT,
    DAY,
    HOUR,
    MINUTE,
    SKIPPED,
    GaugeDefinition,
    MetricDefinition,
    builtin_key,
    dimension_value,
)
from domain.micros import later
from domain.ports import CounterDelta, CounterKey, GaugeKey, GaugeValue, ViewChanges
from projections.buckets import Bucketing
from projections.gauges import compile_gauges, newer, project_gauges

#: The name of the counters-and-gauges projection in checkpoints and status.
PROJECTION = "metrics"

# (counter key, filters, dimension properties, value property or None for counts, parse numeric strings)
_Compiled = tuple[str, tuple[tuple[str, str], ...], tuple[str, ...], str | None, bool]

# A plain decimal as people write amounts: an optional minus, ASCII digits, an optional
# fraction. No exponent, sign "+", spaces, "_", leading or trailing point, NaN, inf or hex.
_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def plain_decimal(text: str) -> float | None:
    """The number a plain decimal string stands for ("12.50", "-3"); None for any other
    text, and for one beyond any double."""
    if _PLAIN_DECIMAL.fullmatch(text) is None:
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _matches(props, filters: tuple[tuple[str, str], ...]) -> bool:
    for prop, wanted in filters:
        raw = props.get(prop)
        if (raw if type(raw) is str else dimension_value(raw)) != wanted:
            return False
    return True


def _dimension_column(props: Sequence[Mapping[str, Any]], dimension: str) -> list[str]:
    column = [p.get(dimension) for p in props]
    if set(map(type, column)) != {str}:  # a number, a boolean or a missing value
        column = [raw if type(raw) is str else dimension_value(raw) for raw in column]
    return column


def _fold(
    metric: _Compiled,
    props: Sequence[Mapping[str, Any]],
    minutes: Sequence[int],
    counts: dict[tuple[str, int, tuple[str, ...]], int],
    values: dict[tuple[str, int, tuple[str, ...]], list],
) -> int:
    """Add the facts (their properties and minutes, of the metric's event type) to the
    metric's minute cells: ``counts`` for a count, ``values`` ([count, sum, min, max])
    for a metric of a value. Returns how many facts had a value property that is not a
    number (skipped)."""
    metric_key, filters, dimensions, value_property, parse = metric
    if filters:
        chosen = [i for i, p in enumerate(props) if _matches(p, filters)]
        props, minutes = [props[i] for i in chosen], [minutes[i] for i in chosen]
        if not props:
            return 0
    if dimensions:
        dims: Iterable[tuple[str, ...]] = zip(*(_dimension_column(props, d) for d in dimensions), strict=True)
    else:
        dims = repeat((), len(props))
    keys = zip(repeat(metric_key), minutes, dims)
    if value_property is None:
        for key, n in Counter(keys).items():
            counts[key] = counts.get(key, 0) + n
        return 0
    skipped = 0
    for key, value in zip(keys, [p.get(value_property) for p in props]):  # noqa: B905 - equal by construction
        kind = type(value)
        if kind is not float:
            if kind is int:
                try:
                    value = float(value)
                except OverflowError:
                    skipped += 1  # an integer beyond any double
                    continue
            elif value is None:
                continue  # missing (or null): no value, nothing to report
            elif not (parse and kind is str and (value := plain_decimal(value)) is not None):
                skipped += 1  # text, a boolean, an object...: present but not a number
                continue
        cell = values.get(key)
        if cell is None:
            values[key] = [1, value, value, value]
        else:
            cell[0] += 1
            cell[1] += value
            if value < cell[2]:
                cell[2] = value
            elif value > cell[3]:
                cell[3] = value
    return skipped


def _compile(metric: MetricDefinition) -> _Compiled:
    value_property = None if metric.aggregation == COUNT else metric.value_property
    return (metric.key, metric.filters, metric.dimensions, value_property, metric.parse_numeric_strings)


class MetricsProjection:
    """Counters and gauges of a set of definitions.

    ``builtins`` adds the built-in count per event type and reports event types; a
    rebuild of chosen metrics turns it off so that it recomputes only those.
    """

    def __init__(
        self,
        metrics: Iterable[MetricDefinition],
        gauges: Iterable[GaugeDefinition],
        bucketing: Bucketing,
        builtins: bool = True,
    ) -> None:
        self.bucketing = bucketing
        self.builtins = builtins
        self._by_type: dict[str, list[_Compiled]] = {}
        for metric in metrics:
            if not metric.builtin:
                self._by_type.setdefault(metric.event_type, []).append(_compile(metric))
        self._gauges = compile_gauges(gauges)

    def project(self, events: Sequence[RecordedEvent]) -> ViewChanges:
        counts: dict[tuple[str, int, tuple[str, ...]], int] = {}
        values: dict[tuple[str, int, tuple[str, ...]], list] = {}
        types: dict[str, int] = {}
        gauges: dict[GaugeKey, GaugeValue] = {}
        skipped: dict[str, int] = {}
        if not events:
            return ViewChanges(counters={}, gauges=gauges, event_types=types, events=0, watermark=None)
        # Column-wise: zip(*events) transposes the lean rows in C, and each metric then
        # folds columns (comprehensions, Counter, zip) instead of one Python step per fact
        # and attribute. Times are integer epoch µs: no datetime is built.
        _, etypes, occurred, properties, *_ = zip(*events, strict=True)
        minutes = [micros // 60_000_000 * 60 for micros in occurred]
        one_type = etypes.count(etypes[0]) == len(etypes)
        if self.builtins and one_type:  # the usual page: count minutes, no (type, minute) pair per fact
            etype = etypes[0]
            builtin = builtin_key(etype)
            for minute, n in Counter(minutes).items():
                counts[(builtin, minute, ())] = n
            types[etype] = len(etypes)
        elif self.builtins:
            for (etype, minute), n in Counter(zip(etypes, minutes, strict=True)).items():
                key = (builtin_key(etype), minute, ())
                counts[key] = counts.get(key, 0) + n
                types[etype] = types.get(etype, 0) + n
        for etype, compiled in self._by_type.items():
            if one_type:
                if etype != etypes[0]:
                    continue
                props, mins = properties, minutes
            else:
                chosen = [i for i, t in enumerate(etypes) if t == etype]
                if not chosen:
                    continue
                props, mins = [properties[i] for i in chosen], [minutes[i] for i in chosen]
            for metric in compiled:
                if n := _fold(metric, props, mins, counts, values):
                    skipped[metric[0]] = skipped.get(metric[0], 0) + n
        project_gauges(self._gauges, events, gauges)
        counters = self._roll_up(counts, values)
        for metric_key, n in skipped.items():
            counters[(metric_key, SKIPPED, 0, ())] = CounterDelta(n, 0.0, None, None)
        return ViewChanges(
            counters=counters,
            gauges=gauges,
            event_types=types,
            events=len(events),
            watermark=max(occurred),
        )

    def _roll_up(
        self,
        counts: dict[tuple[str, int, tuple[str, ...]], int],
        values: dict[tuple[str, int, tuple[str, ...]], list],
    ) -> dict[CounterKey, CounterDelta]:
        """Minute cells to minute, hour and day deltas. Minute cells are final as they are;
        they roll up into hour segments (an hour, split where a local day starts inside it,
        as with half-hour time zones), and the segments into hours and days: one dict step
        per minute cell, the rest on the far fewer segments."""
        day_of_minute = self.bucketing.day_of_minute
        new = tuple.__new__
        out: dict[CounterKey, CounterDelta] = {}
        segment_of: dict[int, tuple[int, int]] = {}  # minute -> (hour start, local day start)
        segments: dict[tuple[str, tuple[int, int], tuple[str, ...]], list] = {}
        for (metric_key, minute, dims), n in counts.items():
            out[(metric_key, MINUTE, minute, dims)] = new(CounterDelta, (n, 0.0, None, None))
            segment = segment_of.get(minute)
            if segment is None:
                segment = segment_of[minute] = (minute - minute % 3600, day_of_minute(minute))
            key = (metric_key, segment, dims)
            cell = segments.get(key)
            if cell is None:
                segments[key] = [n, 0.0, None, None]
            else:
                cell[0] += n
        for (metric_key, minute, dims), (n, total, low, high) in values.items():
            out[(metric_key, MINUTE, minute, dims)] = new(CounterDelta, (n, total, low, high))
            segment = segment_of.get(minute)
            if segment is None:
                segment = segment_of[minute] = (minute - minute % 3600, day_of_minute(minute))
            key = (metric_key, segment, dims)
            cell = segments.get(key)
            if cell is None:
                segments[key] = [n, total, low, high]
            else:
                cell[0] += n
                cell[1] += total
                if low < cell[2]:
                    cell[2] = low
                if high > cell[3]:
                    cell[3] = high
        coarse: dict[CounterKey, list] = {}
        for (metric_key, (hour, day), dims), (n, total, low, high) in segments.items():
            for key in ((metric_key, HOUR, hour, dims), (metric_key, DAY, day, dims)):
                cell = coarse.get(key)
                if cell is None:
                    coarse[key] = [n, total, low, high]
                else:
                    cell[0] += n
                    cell[1] += total
                    if low is not None and (cell[2] is None or low < cell[2]):
                        cell[2] = low
                    if high is not None and (cell[3] is None or high > cell[3]):
                        cell[3] = high
        for key, (n, total, low, high) in coarse.items():
            out[key] = new(CounterDelta, (n, total, low, high))
        return out


def merge(changes: Iterable[ViewChanges]) -> ViewChanges:
    """Several batches' changes as one (what applying them one after another gives)."""
    counters: dict[CounterKey, CounterDelta] = {}
    gauges: dict[GaugeKey, GaugeValue] = {}
    types: dict[str, int] = {}
    events = 0
    watermark: int | None = None
    for change in changes:
        for key, delta in change.counters.items():
            counters[key] = combine(counters.get(key), delta)
        for key, reading in change.gauges.items():
            if newer(reading, gauges.get(key)):
                gauges[key] = reading
        for etype, n in change.event_types.items():
            types[etype] = types.get(etype, 0) + n
        events += change.events
        watermark = later(watermark, change.watermark)
    return ViewChanges(counters=counters, gauges=gauges, event_types=types, events=events, watermark=watermark)


def combine(a: CounterDelta | None, b: CounterDelta) -> CounterDelta:
    """Two deltas of one cell as one."""
    if a is None:
        return b
    return CounterDelta(
        a.count + b.count,
        a.sum + b.sum,
        b.min if a.min is None else a.min if b.min is None else min(a.min, b.min),
        b.max if a.max is None else a.max if b.max is None else max(a.max, b.max),
    )


def type_totals(facts: Sequence[RecordedEvent]) -> ViewChanges:
    """The per-type totals of ``facts`` alone (what a replay rebuilds into a generation)."""
    types: dict[str, int] = {}
    for fact in facts:
        types[fact.type] = types.get(fact.type, 0) + 1
    return ViewChanges(counters={}, gauges={}, event_types=types, events=0, watermark=None)
