"""A widget's data as CSV: the same values ``dashboard(slug)`` returns, one row per point,
breakdown row, reading, event or dataset row (``services.dashboards.table_of``)."""

from __future__ import annotations

from domain.errors import FieldError, NotFound, ValidationError
from projections.buckets import Bucketing
from services.datasets import table_csv
from services.widget_data import WidgetData, table_of


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
    table = table_of(data, bucketing)
    return table_csv([c.name for c in table.columns], table.rows)
