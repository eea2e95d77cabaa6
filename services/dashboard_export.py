"""A widget's data as CSV: the same values ``dashboard(slug)`` returns, one row per point,
breakdown row, reading, event or dataset row."""

from __future__ import annotations

from datetime import datetime

from domain.errors import FieldError, NotFound, ValidationError
from domain.micros import from_epoch_micros
from projections.buckets import Bucketing
from services.dashboards import WidgetData
from services.datasets import table_csv


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def widget_csv(data: WidgetData, bucketing: Bucketing) -> str:
    """CSV text with a header line; ``NotFound`` for a widget without data,
    ``ValidationError`` for one whose source failed."""
    widget = data.widget
    if widget.source is None:
        raise NotFound(f"widget {widget.id!r} is a {widget.kind} and shows no data")
    if data.error is not None:
        raise ValidationError([FieldError("widget", f"widget {widget.id!r} has no data: {data.error[1]}")])
    if data.kpis:
        return table_csv(
            ["metric", "value", "previous", "change_percent"],
            [[name, kpi.value, kpi.previous, kpi.change_percent] for name, kpi in data.kpis],
        )
    if data.series is not None:
        answer = data.series
        moment = lambda bucket: _iso(bucketing.to_datetime(answer.resolution, bucket))  # noqa: E731
        header = ["bucket", "value", "count", "partial"]
        rows: list[list[object]] = [[moment(p.bucket), p.value, p.count, p.partial] for p in answer.points]
        if answer.previous is not None:
            header += ["previous_bucket", "previous_value"]
            for row, previous in zip(rows, answer.previous, strict=True):
                row += [moment(previous.bucket), previous.value]
        return table_csv(header, rows)
    if data.breakdown is not None:
        return table_csv(["key", "value", "count"], [[r.key, r.value, r.count] for r in data.breakdown])
    if data.gauges is not None:
        return table_csv(
            ["key", "value", "occurred_at"],
            [[r.key, r.value, _iso(from_epoch_micros(r.occurred_at))] for r in data.gauges],
        )
    if data.events is not None:
        keys: list[str] = []
        for event in data.events:
            keys.extend(k for k in event.properties if k not in keys)
        return table_csv(
            ["id", "type", "occurred_at", "source", *keys],
            [[e.id, e.type, _iso(e.occurred_at), e.source, *(e.properties.get(k) for k in keys)] for e in data.events],
        )
    if data.table is not None:
        return table_csv([c.name for c in data.table.columns], data.table.rows)
    raise NotFound(f"widget {widget.id!r} shows no data")
