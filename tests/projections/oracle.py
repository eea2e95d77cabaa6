"""A naive recomputation of counters and gauges from raw facts, written independently of
``projections/`` (its own bucketing and value rules), and the comparison with what a view
store holds."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.events import RecordedEvent
from domain.metrics import GaugeDefinition, MetricDefinition
from domain.ports import EventStore, ViewStore
from tests.support import all_facts

EVERYTHING = (-(2**62), 2**62)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def text(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def buckets_of(moment: datetime, tz: ZoneInfo) -> dict[str, int]:
    seconds = math.floor((moment - _EPOCH) / timedelta(seconds=1))
    local: date = moment.astimezone(tz).date()
    return {
        "minute": seconds - seconds % 60,
        "hour": seconds - seconds % 3600,
        "day": int(datetime(local.year, local.month, local.day, tzinfo=tz).timestamp()),
    }


Cells = dict[tuple[str, int, tuple[str, ...]], list]


def expected_counters(facts: Iterable[RecordedEvent], metric: MetricDefinition, timezone: str) -> Cells:
    tz = ZoneInfo(timezone)
    cells: Cells = {}
    for fact in facts:
        if fact.type != metric.event_type:
            continue
        props = fact.properties
        if any(text(props.get(p)) != v for p, v in metric.filters):
            continue
        value: float | None = None
        if not metric.builtin and metric.aggregation != "count":
            raw = props.get(metric.value_property or "")
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                continue
            value = float(raw)
        dims = tuple(text(props.get(d)) for d in metric.dimensions)
        for resolution, bucket in buckets_of(fact.occurred_at, tz).items():
            cell = cells.setdefault((resolution, bucket, dims), [0, 0.0, None, None])
            cell[0] += 1
            if value is not None:
                cell[1] += value
                cell[2] = value if cell[2] is None else min(cell[2], value)
                cell[3] = value if cell[3] is None else max(cell[3], value)
    return cells


def assert_counters_equal(views: ViewStore, metric: MetricDefinition, expected: Cells) -> None:
    """Every expected cell is stored exactly, and nothing else is."""
    for (resolution, bucket, dims), (count, total, low, high) in expected.items():
        where = dict(enumerate(dims))
        cells = views.read_counters(metric.key, resolution, bucket, bucket + 1, where)
        assert len(cells) == 1, (metric.name, resolution, bucket, dims, cells)
        cell = cells[0]
        assert cell.count == count, (metric.name, resolution, bucket, dims, cell, count)
        assert math.isclose(cell.sum, total, rel_tol=1e-9, abs_tol=1e-6), (metric.name, cell, total)
        assert cell.min == low and cell.max == high, (metric.name, resolution, bucket, dims, cell, low, high)
    for resolution in ("minute", "hour", "day"):
        stored = sum(c.count for c in views.read_counters(metric.key, resolution, *EVERYTHING))
        wanted = sum(v[0] for k, v in expected.items() if k[0] == resolution)
        assert stored == wanted, (metric.name, resolution, stored, wanted)


def expected_gauges(facts: Iterable[RecordedEvent], gauge: GaugeDefinition) -> dict[str, tuple[float, int, str]]:
    latest: dict[str, tuple[int, str, float]] = {}
    for fact in facts:
        if fact.type != gauge.event_type:
            continue
        raw = fact.properties.get(gauge.value_property)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            continue
        key = text(fact.properties.get(gauge.key_property)) if gauge.key_property else "(none)"
        micros = (fact.occurred_at - _EPOCH) // timedelta(microseconds=1)
        candidate = (micros, fact.id, float(raw))
        if key not in latest or candidate[:2] > latest[key][:2]:
            latest[key] = candidate
    return {key: (value, micros, event_id) for key, (micros, event_id, value) in latest.items()}


def assert_gauges_equal(views: ViewStore, gauge: GaugeDefinition, facts: list[RecordedEvent]) -> None:
    stored = {r.key: (r.value, r.occurred_at, r.event_id) for r in views.read_gauges(gauge.name)}
    assert stored == expected_gauges(facts, gauge)


def assert_views_match_facts(
    views: ViewStore,
    store: EventStore,
    metrics: Iterable[MetricDefinition],
    gauges: Iterable[GaugeDefinition],
    timezone: str,
) -> list[RecordedEvent]:
    """Counters of each metric (and every built-in count), gauges and event types equal a
    recomputation from the stored facts. Returns the facts."""
    facts = all_facts(store)
    types = sorted({f.type for f in facts})
    assert views.event_types() == {t: sum(1 for f in facts if f.type == t) for t in types}
    for metric in [*metrics, *(MetricDefinition.builtin_count(t) for t in types)]:
        assert_counters_equal(views, metric, expected_counters(facts, metric, timezone))
    for gauge in gauges:
        assert_gauges_equal(views, gauge, facts)
    return facts
