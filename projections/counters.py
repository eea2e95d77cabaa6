"""The counters projection: a batch of facts in, ``ViewChanges`` out. Pure.

For each metric whose event type and filters a fact matches, the fact adds to one cell
per resolution: ``(metric key, resolution, bucket, dimension values)`` holding count, sum,
min and max of the metric's value. Every fact also adds to the built-in count of its
event type. Cells are pre-aggregated over the whole batch, so a batch becomes one write
per distinct cell: one upsert in SQLite, one conditional ``ADD`` per item in DynamoDB.

The hot path touches one dict entry per fact and metric, at minute resolution; hour
and day cells are rolled up from the minute cells once per batch (sums and counts add,
min and max combine), which is exact because every hour and local-day boundary is a
minute boundary.

Facts whose value property is missing or not a number are not counted by metrics that
aggregate a value (sum, min, max, avg): their count is the number of values, so avg is
sum / count. Count metrics count every matching fact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from domain.events import RecordedEvent
from domain.metrics import COUNT, DAY, HOUR, MINUTE, GaugeDefinition, MetricDefinition, builtin_key, dimension_value
from domain.micros import later
from domain.ports import CounterDelta, CounterKey, GaugeKey, GaugeValue, ViewChanges
from projections.buckets import Bucketing
from projections.gauges import compile_gauges, newer, project_gauges

#: The name of the counters-and-gauges projection in checkpoints and status.
PROJECTION = "metrics"

# (counter key, filters, dimension properties, value property or None for counts)
_Compiled = tuple[str, tuple[tuple[str, str], ...], tuple[str, ...], str | None]


def _matches(props, filters: tuple[tuple[str, str], ...]) -> bool:
    for prop, wanted in filters:
        raw = props.get(prop)
        if (raw if type(raw) is str else dimension_value(raw)) != wanted:
            return False
    return True


def _texts(props, properties: tuple[str, ...]) -> list[str]:
    return [raw if type(raw) is str else dimension_value(raw) for raw in map(props.get, properties)]


def _compile(metric: MetricDefinition) -> _Compiled:
    value_property = None if metric.aggregation == COUNT else metric.value_property
    return (metric.key, metric.filters, metric.dimensions, value_property)


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
        builtin: dict[tuple[str, int], int] = {}
        types: dict[str, int] = {}
        by_type = self._by_type
        builtins = self.builtins
        latest: int | None = None
        for event in events:
            occurred = event.occurred_micros  # the lean path: no datetime per fact
            if latest is None or occurred > latest:
                latest = occurred
            minute = occurred // 60_000_000 * 60
            etype = event.type
            if builtins:
                key2 = (etype, minute)
                builtin[key2] = builtin.get(key2, 0) + 1
            compiled = by_type.get(etype)
            if compiled is None:
                continue
            props = event.properties
            for metric_key, filters, dimensions, value_property in compiled:
                if filters and not _matches(props, filters):
                    continue
                # Unrolled per arity: this line runs once per fact and metric.
                n_dims = len(dimensions)
                if n_dims == 0:
                    key = (metric_key, minute, ())
                elif n_dims == 1:
                    r1 = props.get(dimensions[0])
                    key = (metric_key, minute, (r1 if type(r1) is str else dimension_value(r1),))
                elif n_dims == 2:
                    r1 = props.get(dimensions[0])
                    r2 = props.get(dimensions[1])
                    key = (
                        metric_key,
                        minute,
                        (
                            r1 if type(r1) is str else dimension_value(r1),
                            r2 if type(r2) is str else dimension_value(r2),
                        ),
                    )
                else:
                    key = (metric_key, minute, tuple(_texts(props, dimensions)))
                if value_property is None:
                    counts[key] = counts.get(key, 0) + 1
                    continue
                value = props.get(value_property)
                kind = type(value)
                if kind is not float:
                    if kind is not int:
                        continue  # missing, text or boolean: not a value
                    try:
                        value = float(value)
                    except OverflowError:
                        continue  # an integer beyond any double
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
        if builtins:
            for (etype, minute), n in builtin.items():
                key = (builtin_key(etype), minute, ())
                counts[key] = counts.get(key, 0) + n
                types[etype] = types.get(etype, 0) + n
        gauges: dict[GaugeKey, GaugeValue] = {}
        project_gauges(self._gauges, events, gauges)
        return ViewChanges(
            counters=self._roll_up(counts, values),
            gauges=gauges,
            event_types=types,
            events=len(events),
            watermark=latest,
        )

    def _roll_up(
        self,
        counts: dict[tuple[str, int, tuple[str, ...]], int],
        values: dict[tuple[str, int, tuple[str, ...]], list],
    ) -> dict[CounterKey, CounterDelta]:
        """Minute cells to minute, hour and day deltas. Minute cells are final as they are;
        only hour and day cells merge, and there are far fewer of them."""
        day_of_minute = self.bucketing.day_of_minute
        out: dict[CounterKey, CounterDelta] = {}
        coarse: dict[CounterKey, list] = {}
        for (metric_key, minute, dims), n in counts.items():
            out[(metric_key, MINUTE, minute, dims)] = CounterDelta(n, 0.0, None, None)
            for key in (
                (metric_key, HOUR, minute - minute % 3600, dims),
                (metric_key, DAY, day_of_minute(minute), dims),
            ):
                cell = coarse.get(key)
                if cell is None:
                    coarse[key] = [n, 0.0, None, None]
                else:
                    cell[0] += n
        for (metric_key, minute, dims), (n, total, low, high) in values.items():
            out[(metric_key, MINUTE, minute, dims)] = CounterDelta(n, total, low, high)
            for key in (
                (metric_key, HOUR, minute - minute % 3600, dims),
                (metric_key, DAY, day_of_minute(minute), dims),
            ):
                cell = coarse.get(key)
                if cell is None:
                    coarse[key] = [n, total, low, high]
                else:
                    cell[0] += n
                    cell[1] += total
                    if low < cell[2]:
                        cell[2] = low
                    if high > cell[3]:
                        cell[3] = high
        for key, (n, total, low, high) in coarse.items():
            out[key] = CounterDelta(n, total, low, high)
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
