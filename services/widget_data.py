"""A widget's data as the dashboards service resolves it, and its shapes: a KPI's values
from a series, a dataset's chosen columns, any widget's data as a typed table (what its CSV
export and a dynamic dataset show). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from domain.datasets import BOOLEAN, DATETIME, NUMBER, TEXT, Cell, Column, Table
from domain.errors import FieldError, NotFound, ValidationError
from domain.events import RecordedEvent
from domain.micros import from_epoch_micros
from domain.ports import GaugeReading
from domain.widgets import Widget
from projections import series as shaping
from projections.buckets import Bucketing
from services.alert_board import AlertingInstance
from services.metrics import SeriesAnswer


@dataclass(frozen=True, slots=True)
class Kpi:
    """A metric's value over a widget's range, and over the period it is compared with."""

    value: float | None
    previous: float | None
    change_percent: float | None


@dataclass(frozen=True, slots=True)
class WidgetData:
    widget: Widget
    series: SeriesAnswer | None = None
    kpi: Kpi | None = None
    #: A KPI's metrics (``source.metric``, then ``source.metrics``), each with its value.
    kpis: tuple[tuple[str, Kpi], ...] = ()
    breakdown: list[shaping.BreakdownRow] | None = None
    gauges: list[GaugeReading] | None = None
    events: list[RecordedEvent] | None = None
    #: DATASET: the columns shown and the rows.
    table: Table | None = None
    #: ALERTS: the rule instances alerting now.
    alerts: list[AlertingInstance] | None = None
    #: ``(code, message)`` when the source could not be read; the other widgets still resolve.
    error: tuple[str, str] | None = None


def _combine(aggregation: str, points: Sequence[shaping.Point]) -> float | None:
    """One value for a range from its points (avg weighted by count: exact)."""
    values = [(p.value, p.count) for p in points if p.value is not None]
    if not values:
        return None if aggregation in ("min", "max", "avg") else 0.0
    if aggregation == "min":
        return min(v for v, _ in values)
    if aggregation == "max":
        return max(v for v, _ in values)
    if aggregation == "avg":
        total = sum(c for _, c in values)
        return sum(v * c for v, c in values) / total if total else None
    return float(sum(v for v, _ in values))


def select_columns(table: Table, fields: Sequence[str] | None) -> Table:
    """The table with only ``fields`` (in that order); an unknown one is a ``ValidationError``."""
    if fields is None:
        return table
    index = {column.name: i for i, column in enumerate(table.columns)}
    missing = [f for f in fields if f not in index]
    if missing:
        known = ", ".join(index)
        raise ValidationError([FieldError("source.fields", f"no column {missing[0]!r} in the dataset ({known})")])
    chosen = [index[f] for f in fields]
    return Table(tuple(table.columns[i] for i in chosen), tuple(tuple(row[i] for i in chosen) for row in table.rows))


def table_of(data: WidgetData, bucketing: Bucketing) -> Table:
    """A widget's data as a typed table (what its CSV export and a dynamic dataset show)."""
    if data.table is not None:
        return data.table
    if data.series is not None:
        answer = data.series

        def moment(bucket: int) -> str:
            return bucketing.to_datetime(answer.resolution, bucket).isoformat()

        columns = [Column("bucket", DATETIME), Column("value", NUMBER), Column("count", NUMBER)]
        columns.append(Column("partial", BOOLEAN))
        rows: list[list[Cell]] = [[moment(p.bucket), p.value, p.count, p.partial] for p in answer.points]
        if answer.previous is not None:
            columns += [Column("previous_bucket", DATETIME), Column("previous_value", NUMBER)]
            for row, previous in zip(rows, answer.previous, strict=True):
                row += [moment(previous.bucket), previous.value]
        return Table(tuple(columns), tuple(map(tuple, rows)))
    if data.breakdown is not None:
        columns = [Column("key", TEXT), Column("value", NUMBER), Column("count", NUMBER)]
        return Table(tuple(columns), tuple((r.key, r.value, r.count) for r in data.breakdown))
    if data.gauges is not None:
        columns = [Column("key", TEXT), Column("value", NUMBER), Column("occurred_at", DATETIME)]
        rows_ = tuple((r.key, r.value, from_epoch_micros(r.occurred_at).isoformat()) for r in data.gauges)
        return Table(tuple(columns), rows_)
    if data.events is not None:
        keys: list[str] = []
        for event in data.events:
            keys.extend(k for k in event.properties if k not in keys)
        columns = [Column("id", TEXT), Column("type", TEXT), Column("occurred_at", DATETIME), Column("source", TEXT)]
        columns += [Column(k, TEXT) for k in keys]
        return Table(
            tuple(columns),
            tuple(
                (e.id, e.type, e.occurred_at.isoformat(), e.source, *(e.properties.get(k) for k in keys))
                for e in data.events
            ),
        )
    if data.alerts is not None:
        columns = [Column("rule", TEXT), Column("instance", TEXT), Column("state", TEXT), Column("severity", TEXT)]
        columns += [Column("value", NUMBER), Column("threshold", NUMBER), Column("since", DATETIME)]
        columns.append(Column("message", TEXT))
        return Table(
            tuple(columns),
            tuple(
                (a.rule, a.instance, a.state, a.severity, a.value, a.threshold, _iso(a.since), a.message)
                for a in data.alerts
            ),
        )
    raise NotFound(f"widget {data.widget.id!r} shows no data")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def kpi_of(answer: SeriesAnswer) -> Kpi:
    aggregation = answer.metric.aggregation
    value = _combine(aggregation, answer.points)
    previous = None if answer.previous is None else _combine(aggregation, answer.previous)
    change = None
    if value is not None and previous:
        change = (value - previous) / abs(previous) * 100
    return Kpi(value, previous, change)
