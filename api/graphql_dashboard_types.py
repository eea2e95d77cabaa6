"""GraphQL types of dashboards, and their shaping from the service's plain values.

Every type here is built eagerly from a value (no field reads the request), so a pushed
``dashboardUpdated`` value renders once for all its viewers (``api.graphql_live``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from api.graphql_metrics import BreakdownRow, GaugeReading, Point, Resolution, Series
from api.graphql_recent import RecordedEvent
from domain import dashboards as agg
from domain import widgets as kinds
from domain.micros import from_epoch_micros
from projections.buckets import Bucketing
from services.dashboards import ResolvedDashboard
from services.widget_data import WidgetData

DashboardState = strawberry.enum(Enum("DashboardState", {s: s for s in agg.STATES}), description="A version's state.")
Visibility = strawberry.enum(
    Enum("Visibility", {v: v for v in agg.VISIBILITIES}), description="PUBLIC: readable without a key once published."
)
WidgetKind = strawberry.enum(Enum("WidgetKind", {k: k for k in kinds.KINDS}))
ChartKind = strawberry.enum(Enum("ChartKind", {k: k for k in kinds.CHART_KINDS}))
SourceKind = strawberry.enum(
    Enum("SourceKind", {k: k for k in kinds.SOURCE_KINDS}), description="The query a widget's data comes from."
)
ColumnFormat = strawberry.enum(Enum("ColumnFormat", {k: k for k in kinds.COLUMN_FORMATS}))
WidgetComparison = strawberry.enum(
    Enum("WidgetComparison", {c.upper(): c for c in kinds.COMPARISONS}), description="What a series is compared with."
)


@strawberry.type
class Layout:
    x: int
    y: int
    w: int = strawberry.field(description="Width in columns of the 12-column grid.")
    h: int
    section: str | None = strawberry.field(description="The SECTION widget it belongs to.")
    tab: str | None


@strawberry.type
class WidgetSource:
    kind: SourceKind  # type: ignore[valid-type]
    metric: str | None
    resolution: Resolution
    last: int | None
    compare_to: WidgetComparison | None  # type: ignore[valid-type]
    dimension: str | None
    top: int
    gauge: str | None
    keys: list[str] | None
    event_type: str | None
    limit: int
    dataset: str | None
    fields: list[str] | None
    metrics: list[str]
    severities: list[str] | None = strawberry.field(description="ALERTS: only these severities (null: all).")
    rules: list[str] | None = strawberry.field(description="ALERTS: only these rules (null: all).")


@strawberry.type
class Column:
    field: str
    label: str
    format: ColumnFormat  # type: ignore[valid-type]


@strawberry.type
class Kpi:
    metric: str
    value: float | None = strawberry.field(description="The metric over the widget's range.")
    previous: float | None = strawberry.field(description="Over the period compared with (compareTo).")
    change_percent: float | None = strawberry.field(description="(value - previous) / |previous| x 100.")


@strawberry.type
class DatasetColumn:
    name: str
    type: str = strawberry.field(description="NUMBER, BOOLEAN, DATETIME (ISO 8601) or TEXT.")


@strawberry.type(description="A dataset's columns and rows (each row a list, one cell per column).")
class DatasetTable:
    columns: list[DatasetColumn]
    rows: JSON


@strawberry.type(description="An alert-rule instance alerting now (FIRING, or RECOVERING: still alerting).")
class WidgetAlert:
    rule: str
    instance: str = strawberry.field(description="The dimension value; empty for a rule with one instance.")
    state: str = strawberry.field(description="FIRING or RECOVERING.")
    severity: str
    value: float | None = strawberry.field(description="The last value observed.")
    threshold: float
    since: datetime = strawberry.field(description="When it entered its state.")
    message: str


@strawberry.type
class WidgetError:
    code: str
    message: str


@strawberry.type(
    name="WidgetData", description="A widget's data, resolved from its source; only the member of its source is set."
)
class WidgetValues:
    series: Series | None = None
    kpi: Kpi | None = strawberry.field(default=None, description="A KPI's first metric (its `source.metric`).")
    kpis: list[Kpi] | None = strawberry.field(default=None, description="A KPI's metrics: `metric`, then `metrics`.")
    breakdown: list[BreakdownRow] | None = None
    gauges: list[GaugeReading] | None = None
    events: list[RecordedEvent] | None = None
    table: DatasetTable | None = None
    alerts: list[WidgetAlert] | None = strawberry.field(default=None, description="ALERTS: most severe first.")
    error: WidgetError | None = None


@strawberry.type
class Widget:
    id: str
    kind: WidgetKind  # type: ignore[valid-type]
    title: str
    description: str | None
    layout: Layout
    source: WidgetSource | None
    chart: ChartKind | None  # type: ignore[valid-type]
    markdown: str | None
    image_url: str | None
    alt: str | None
    tabs: list[str]
    columns: list[Column]
    format: ColumnFormat  # type: ignore[valid-type]
    data: WidgetValues | None = strawberry.field(
        default=None, description="Resolved by `dashboard` and `dashboardUpdated`; null in lists and mutations."
    )


@strawberry.type
class Dashboard:
    slug: str
    name: str
    description: str
    tags: list[str]
    visibility: Visibility  # type: ignore[valid-type]
    version: int = strawberry.field(description="The number of the version shown.")
    state: DashboardState  # type: ignore[valid-type]
    stream_version: int = strawberry.field(
        description="Pass as expectedVersion to an edit: a stale one is refused with CONFLICT, never a lost edit."
    )
    has_draft: bool = strawberry.field(description="Always false without a key.")
    copied_from: str | None = strawberry.field(description="The dashboard it was copied from; null without a key.")
    release_notes: str | None
    published_at: datetime | None
    published_by: str | None = strawberry.field(description="Who published it; null without a key.")
    updated_at: datetime
    updated_by: str | None = strawberry.field(description="Who changed it last; null without a key.")
    widgets: list[Widget]
    watermark: datetime | None = strawberry.field(
        default=None, description="With resolved data: the latest occurredAt counted, the same for every widget."
    )
    computed_at: datetime | None = strawberry.field(default=None, description="With resolved data: its instant.")


@strawberry.type
class DashboardVersion:
    version: int
    state: DashboardState  # type: ignore[valid-type]
    name: str
    release_notes: str | None
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    updated_by: str | None
    published_at: datetime | None
    published_by: str | None
    widgets: int = strawberry.field(description="How many widgets it has.")


@strawberry.type
class DashboardChange:
    stream_version: int
    type: str
    at: datetime
    by: str
    by_key_id: str | None
    summary: str


# --- Shaping ------------------------------------------------------------------------------


def _widget(widget: kinds.Widget, data: WidgetValues | None = None) -> Widget:
    source = widget.source
    lay = widget.layout
    return Widget(
        id=widget.id,
        kind=WidgetKind(widget.kind),
        title=widget.title,
        description=widget.description,
        layout=Layout(x=lay.x, y=lay.y, w=lay.w, h=lay.h, section=lay.section, tab=lay.tab),
        source=None
        if source is None
        else WidgetSource(
            kind=SourceKind(source.kind),
            metric=source.metric,
            resolution=Resolution(source.resolution),
            last=source.last,
            compare_to=None if source.compare_to is None else WidgetComparison(source.compare_to),
            dimension=source.dimension,
            top=source.top,
            gauge=source.gauge,
            keys=None if source.keys is None else list(source.keys),
            event_type=source.event_type,
            limit=source.limit,
            dataset=source.dataset,
            fields=None if source.fields is None else list(source.fields),
            metrics=list(source.metrics),
            severities=None if source.severities is None else list(source.severities),
            rules=None if source.rules is None else list(source.rules),
        ),
        chart=None if widget.chart is None else ChartKind(widget.chart),
        markdown=widget.markdown,
        image_url=widget.image_url,
        alt=widget.alt,
        tabs=list(widget.tabs),
        columns=[Column(field=c.field, label=c.label, format=ColumnFormat(c.format)) for c in widget.columns],
        format=ColumnFormat(widget.format),
        data=data,
    )


def dashboard_of(
    dashboard: agg.Dashboard, version: agg.Version, data: list[WidgetValues | None] | None = None, public: bool = False
) -> Dashboard:
    """``public``: for a caller without a key, who learns nothing beyond the published version
    itself (not who edits it, not whether a draft exists, not a private dashboard it was copied from)."""
    definition = version.definition
    widgets = [_widget(w, None if data is None else data[i]) for i, w in enumerate(definition.widgets)]
    return Dashboard(
        slug=dashboard.slug,
        name=definition.name,
        description=definition.description,
        tags=list(definition.tags),
        visibility=Visibility(definition.visibility),
        version=version.number,
        state=DashboardState(version.state),
        stream_version=0 if public else dashboard.version,
        has_draft=not public and dashboard.draft is not None,
        copied_from=None if public else dashboard.copied_from,
        release_notes=version.release_notes,
        published_at=version.published_at,
        published_by=None if public else version.published_by,
        updated_at=version.updated_at,
        updated_by=None if public else version.updated_by,
        widgets=widgets,
    )


def _series(bucketing: Bucketing, data: WidgetData) -> Series | None:
    answer = data.series
    if answer is None:
        return None

    def points(found: list[Any]) -> list[Point]:
        return [
            Point(
                bucket=bucketing.to_datetime(answer.resolution, p.bucket),
                value=p.value,
                count=p.count,
                partial=p.partial,
            )
            for p in found
        ]

    return Series(
        metric=answer.metric.name,
        resolution=Resolution(answer.resolution),
        points=points(answer.points),
        watermark=None if answer.watermark is None else from_epoch_micros(answer.watermark),
        previous=None if answer.previous is None else points(answer.previous),
    )


def _kpis(data: WidgetData) -> list[Kpi]:
    return [
        Kpi(metric=name, value=k.value, previous=k.previous, change_percent=k.change_percent) for name, k in data.kpis
    ]


def widget_data_of(bucketing: Bucketing, data: WidgetData) -> WidgetValues:
    return WidgetValues(
        series=_series(bucketing, data),
        kpi=_kpis(data)[0] if data.kpis else None,
        kpis=_kpis(data) if data.kpis else None,
        breakdown=None
        if data.breakdown is None
        else [BreakdownRow(key=r.key, value=r.value, count=r.count) for r in data.breakdown],
        gauges=None
        if data.gauges is None
        else [
            GaugeReading(key=r.key, value=r.value, occurred_at=from_epoch_micros(r.occurred_at), event_id=r.event_id)
            for r in data.gauges
        ],
        events=None if data.events is None else [RecordedEvent.of(e) for e in data.events],
        table=None
        if data.table is None
        else DatasetTable(
            columns=[DatasetColumn(name=c.name, type=c.type) for c in data.table.columns],
            rows=[list(row) for row in data.table.rows],
        ),
        alerts=None
        if data.alerts is None
        else [
            WidgetAlert(
                rule=a.rule,
                instance=a.instance,
                state=a.state,
                severity=a.severity,
                value=a.value,
                threshold=a.threshold,
                since=datetime.fromtimestamp(a.since, UTC),
                message=a.message,
            )
            for a in data.alerts
        ],
        error=None if data.error is None else WidgetError(code=data.error[0], message=data.error[1]),
    )


def resolved_of(bucketing: Bucketing, resolved: ResolvedDashboard, public: bool = False) -> Dashboard:
    # A widget without a source (text, image, section) has no data: null.
    data = [None if d.widget.source is None else widget_data_of(bucketing, d) for d in resolved.widgets]
    shaped = dashboard_of(resolved.dashboard, resolved.version, data, public)
    shaped.watermark = None if resolved.watermark is None else from_epoch_micros(resolved.watermark)
    shaped.computed_at = datetime.fromtimestamp(resolved.at, UTC)
    return shaped


def version_of(version: agg.Version, public: bool = False) -> DashboardVersion:
    return DashboardVersion(
        version=version.number,
        state=DashboardState(version.state),
        name=version.definition.name,
        release_notes=version.release_notes,
        created_at=version.created_at,
        created_by=None if public else version.created_by,
        updated_at=version.updated_at,
        updated_by=None if public else version.updated_by,
        published_at=version.published_at,
        published_by=None if public else version.published_by,
        widgets=len(version.definition.widgets),
    )


def change_of(change: agg.Change) -> DashboardChange:
    return DashboardChange(
        stream_version=change.stream_version,
        type=change.type,
        at=change.at,
        by=change.by,
        by_key_id=change.by_key_id,
        summary=change.summary,
    )
