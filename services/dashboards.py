"""Dashboards as every entry point serves them: listed, read with their widgets' data
resolved, edited, published, archived and copied, with the caller's rights checked here.

Reading. Dashboards are few and small, so the read side is a read-through fold of their
streams (``DashboardCache``), not a projection on the engine: each dashboard's state is
cached per process and caught up (one indexed read of its stream past the cached version)
at most every ``REFRESH_SECONDS``; a command of this process puts its result in the cache
at once. Another process's edits show within ``REFRESH_SECONDS``.

Visibility. A PUBLIC dashboard's published version is readable by anyone, without a key;
drafts, archived and inactive versions and PRIVATE dashboards need ``read``; changes need
``editor`` (or ``admin``). To a caller without ``read`` a dashboard it may not see does not
exist: the same ``NotFound`` as for a slug nobody used, and it is absent from lists.

Widget data. Every widget's source is a query the metrics service or the recent-events
feed already answers; a dashboard is resolved at one instant with one freshness watermark
(the counters' latest ``occurredAt``) for every widget. The widgets' data is read on the
dashboard's behalf (``VIEWER``): publishing a PUBLIC dashboard is what makes that data
public (an ``ALERTS`` widget shows its rules' alerting instances, never their targets).
A widget whose source fails (a metric deleted since) carries its error, and the
other widgets still resolve.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from domain import dashboards as agg
from domain.access import Principal, require
from domain.clock import Clock, now_utc
from domain.dashboards import PUBLIC, Dashboard, Version
from domain.datasets import Table
from domain.errors import FieldError, NotFound, ValidationError
from domain.ports import EventStore, RecentEventsReader, gauge_marker, metric_marker, recent_marker
from domain.widgets import (
    KPI,
    S_ALERTS,
    S_BREAKDOWN,
    S_DATASET,
    S_GAUGE,
    S_RECENT,
    S_SERIES,
    TABLE,
    Widget,
    check_sections,
    parse_widget,
    source_from,
)
from projections import series as shaping
from services.alerts import AlertsService
from services.datasets import DatasetsService
from services.metrics import MetricsService
from services.stream_folds import REFRESH_SECONDS, StreamFolds
from services.widget_data import WidgetData, kpi_of, select_columns, table_of

#: Anyone without a key: sees PUBLIC published dashboards only.
ANONYMOUS = Principal(key_id=None, name="anonymous", scopes=frozenset())
#: Whom a visible dashboard's widgets read their data as.
VIEWER = Principal(key_id=None, name="dashboard viewer", scopes=frozenset({"read"}))
CURRENT, DRAFT = "current", "draft"


class DashboardCache(StreamFolds[Dashboard]):
    """Every dashboard's fold, caught up from its stream at most every ``refresh_seconds``."""

    def __init__(
        self, store: EventStore, refresh_seconds: float = REFRESH_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(
            store,
            new=Dashboard,
            copy=_copy,
            name_of=lambda dashboard: dashboard.slug,
            stream_of=agg.stream_of,
            directory=agg.listed_slugs,
            refresh_seconds=refresh_seconds,
            clock=clock,
        )


def _copy(dashboard: Dashboard) -> Dashboard:
    return Dashboard(
        dashboard.slug, list(dashboard.versions), list(dashboard.history), dashboard.copied_from, dashboard.version
    )


@dataclass(frozen=True, slots=True)
class ResolvedDashboard:
    dashboard: Dashboard = field(compare=False)
    version: Version
    #: The dashboard stream's version the definition was read at.
    stream_version: int
    widgets: tuple[WidgetData, ...]
    #: Latest ``occurredAt`` (epoch µs) the counters reflect, the same for every widget.
    watermark: int | None
    #: The instant (epoch seconds) every widget was computed at.
    at: float = field(compare=False)


class DashboardsService:
    def __init__(
        self,
        events: EventStore,
        metrics: MetricsService,
        recent: RecentEventsReader,
        clock: Clock,
        datasets: DatasetsService | None = None,
        alerts: Callable[[], AlertsService] | None = None,
    ) -> None:
        self.events = events
        self.metrics = metrics
        self.recent = recent
        self.clock = clock
        self.datasets = datasets
        #: Built on first use: a process that shows no alerts never builds their notifiers.
        self._alerts = alerts
        self.cache = DashboardCache(events)

    # --- visibility ------------------------------------------------------------------

    @staticmethod
    def _public(dashboard: Dashboard) -> Version | None:
        published = dashboard.published
        return published if published is not None and published.definition.visibility == PUBLIC else None

    def visible(self, principal: Principal, slug: str, which: str | int = CURRENT) -> tuple[Dashboard, Version]:
        """The dashboard and the version ``which`` (``current``, ``draft`` or a number) if
        the caller may see it; else ``NotFound``, worded alike whether or not it exists."""
        missing = NotFound(f"no dashboard {slug[:80]!r}")
        dashboard = self.cache.get(slug) if agg.SLUG.fullmatch(slug) else None
        if dashboard is None:
            raise missing
        if not principal.allows("read"):
            public = self._public(dashboard)
            if public is None or which not in (CURRENT, public.number):
                raise missing
            return dashboard, public
        if which == CURRENT:
            return dashboard, dashboard.current
        if which == DRAFT:
            if dashboard.draft is None:
                raise NotFound(f"dashboard {slug!r} has no draft")
            return dashboard, dashboard.draft
        found = next((v for v in dashboard.versions if v.number == which), None)
        if found is None:
            raise NotFound(f"dashboard {slug!r} has no version {which}")
        return dashboard, found

    def listed(
        self, principal: Principal, state: str | None = None, tag: str | None = None, search: str | None = None
    ) -> list[tuple[Dashboard, Version]]:
        """Dashboards the caller may see, each with the version shown (sorted by name):
        with ``state``, those having a version in that state; ``search`` matches names and
        descriptions, case-insensitively."""
        if state is not None and state not in agg.STATES:
            raise ValidationError([FieldError("state", f"must be one of {', '.join(agg.STATES)}")])
        reader = principal.allows("read")
        needle = (search or "").strip().lower()
        found = []
        for dashboard in self.cache.all():
            if reader:
                version = dashboard.current
                if state is not None:
                    in_state = dashboard.in_state(state)
                    if in_state is None:
                        continue
                    version = in_state
            else:
                public = self._public(dashboard)
                if public is None or state not in (None, agg.PUBLISHED):
                    continue
                version = public
            definition = version.definition
            if tag is not None and tag not in definition.tags:
                continue
            if needle and needle not in definition.name.lower() and needle not in definition.description.lower():
                continue
            found.append((dashboard, version))
        return sorted(found, key=lambda pair: (pair[1].definition.name.lower(), pair[0].slug))

    def versions(self, principal: Principal, slug: str) -> list[Version]:
        """Every version, newest first; without ``read`` only a public published one."""
        dashboard, shown = self.visible(principal, slug)
        if not principal.allows("read"):
            return [shown]
        return list(reversed(dashboard.versions))

    def history(self, principal: Principal, slug: str) -> list[agg.Change]:
        """The audit log of a dashboard: needs ``read``."""
        require(principal, "read")
        dashboard, _ = self.visible(principal, slug)
        return list(dashboard.history)

    # --- widget data -----------------------------------------------------------------

    def resolve(self, principal: Principal, slug: str, which: str | int = CURRENT) -> ResolvedDashboard:
        """The version with every widget's data, at one instant and one watermark."""
        dashboard, version = self.visible(principal, slug, which)
        now = self.clock.now()
        watermark = self.metrics.watermark()
        widgets = tuple(self.widget_data(widget, now) for widget in version.definition.widgets)
        return ResolvedDashboard(dashboard, version, dashboard.version, widgets, watermark, now)

    def widget_data(self, widget: Widget, now: float) -> WidgetData:
        source = widget.source
        if source is None:
            return WidgetData(widget)
        try:
            if source.kind == S_SERIES:
                span = shaping.Span(last=source.last)
                answer = self.metrics.series(
                    VIEWER, source.metric or "", source.resolution, span, (), source.compare_to, now
                )
                if widget.kind == KPI:
                    kpis = [(answer.metric.name, kpi_of(answer))]
                    for name in source.metrics:
                        more = self.metrics.series(VIEWER, name, source.resolution, span, (), source.compare_to, now)
                        kpis.append((more.metric.name, kpi_of(more)))
                    return WidgetData(widget, series=answer, kpi=kpis[0][1], kpis=tuple(kpis))
                return WidgetData(widget, series=answer)
            if source.kind == S_BREAKDOWN:
                rows = self.metrics.breakdown(
                    VIEWER,
                    source.metric or "",
                    source.dimension or "",
                    source.resolution,
                    shaping.Span(last=source.last),
                    source.top,
                )
                return WidgetData(widget, breakdown=rows)
            if source.kind == S_GAUGE:
                readings = self.metrics.gauges(VIEWER, source.gauge or "", source.keys)
                return WidgetData(widget, gauges=readings)
            if source.kind == S_RECENT:
                return WidgetData(widget, events=self.recent.recent_events(source.event_type, source.limit))
            if source.kind == S_DATASET and self.datasets is not None:
                return WidgetData(
                    widget, table=select_columns(self.dataset_table(source.dataset or "", now), source.fields)
                )
            if source.kind == S_ALERTS and self._alerts is not None:
                return WidgetData(widget, alerts=self._alerts().alerting(VIEWER, source.severities, source.rules))
        except ValidationError as exc:
            return WidgetData(widget, error=("BAD_WIDGET_SOURCE", str(exc)))
        except NotFound as exc:
            return WidgetData(widget, error=("NOT_FOUND", str(exc)))
        return WidgetData(widget, error=("BAD_WIDGET_SOURCE", f"unknown source kind {source.kind!r}"))

    def markers(self, version: Version) -> frozenset[str]:
        """The change markers the version's widgets' data depends on."""
        keys: set[str] = set()
        for widget in version.definition.widgets:
            source = widget.source
            if source is None:
                continue
            if source.kind in (S_SERIES, S_BREAKDOWN) and source.metric:
                for name in (source.metric, *source.metrics):
                    try:
                        keys.add(metric_marker(self.metrics.resolve_metric(name).key))
                    except ValidationError:
                        continue  # the widget shows its error until the metric exists; its key would not move
            elif source.kind == S_GAUGE and source.gauge:
                keys.add(gauge_marker(source.gauge))
            elif source.kind == S_RECENT:
                keys.add(recent_marker(source.event_type or "*"))
            elif source.kind == S_DATASET and self.datasets is not None and source.dataset:
                try:
                    query = self.datasets.found(source.dataset).query
                except NotFound:
                    continue
                if query is not None:  # a dynamic dataset: its query's markers
                    inner = Widget(id=source.dataset, kind=TABLE, title="", source=source_from(query))
                    keys |= self.markers(replace(version, definition=replace(version.definition, widgets=(inner,))))
        return frozenset(keys)

    def dataset_table(self, name: str, now: float | None = None) -> Table:
        """A dataset's rows: a static one's, or a dynamic one's query answered now."""
        if self.datasets is None:
            raise NotFound(f"no dataset {name!r}")
        query = self.datasets.found(name).query
        if query is None:
            return self.datasets.table(name)
        data = self.widget_data(
            Widget(id=name, kind=TABLE, title=name, source=source_from(query)), now or self.clock.now()
        )
        if data.error is not None:
            raise ValidationError([FieldError("query", f"dataset {name!r}: {data.error[1]}")])
        return table_of(data, self.metrics.bucketing)

    def dataset_users(self, name: str) -> list[str]:
        """``slug/widget`` of every widget showing dataset ``name`` in a version that is not INACTIVE."""
        users = []
        for dashboard in self.cache.all():
            for version in dashboard.versions:
                if version.state == agg.INACTIVE:
                    continue
                for widget in version.definition.widgets:
                    source = widget.source
                    found = f"{dashboard.slug}/{widget.id}"
                    if source is not None and source.dataset == name and found not in users:
                        users.append(found)
        return users

    def datasets_version(self, version: Version) -> int:
        """A number that grows whenever a dataset the version's widgets show is replaced."""
        if self.datasets is None:
            return 0
        names = {w.source.dataset for w in version.definition.widgets if w.source and w.source.dataset}
        return sum(self.datasets.version(name) for name in names)

    def alerts_version(self, version: Version) -> int:
        """A number that grows whenever an alert rule changes state, if the version shows alerts."""
        shows_alerts = any(w.source is not None and w.source.kind == S_ALERTS for w in version.definition.widgets)
        return self._alerts().states_version() if shows_alerts and self._alerts is not None else 0

    def stream_version(self, slug: str) -> int:
        """The dashboard stream's version as this process knows it (for live updates)."""
        found = self.cache.get(slug)
        return 0 if found is None else found.version

    # --- changes ---------------------------------------------------------------------

    def _changed(self, dashboard: Dashboard) -> Dashboard:
        self.cache.put(dashboard)
        return dashboard

    def create(
        self, principal: Principal, slug: str, details: Mapping[str, Any], widgets: Sequence[Mapping[str, Any]] = ()
    ) -> Dashboard:
        require(principal, "editor")
        parsed = tuple(parse_widget(w, f"widgets[{i}]") for i, w in enumerate(widgets))
        check_sections(parsed)
        return self._changed(agg.create(self.events, principal, slug, details, now_utc(self.clock), parsed))

    def change_details(
        self, principal: Principal, slug: str, details: Mapping[str, Any], expected_version: int | None = None
    ) -> Dashboard:
        require(principal, "editor")
        now = now_utc(self.clock)
        return self._changed(agg.change_details(self.events, principal, slug, details, now, expected_version))

    def add_widget(
        self,
        principal: Principal,
        slug: str,
        widget: Mapping[str, Any],
        index: int | None = None,
        expected_version: int | None = None,
    ) -> Dashboard:
        require(principal, "editor")
        now = now_utc(self.clock)
        return self._changed(agg.add_widget(self.events, principal, slug, widget, now, index, expected_version))

    def update_widget(
        self, principal: Principal, slug: str, widget: Mapping[str, Any], expected_version: int | None = None
    ) -> Dashboard:
        require(principal, "editor")
        now = now_utc(self.clock)
        return self._changed(agg.update_widget(self.events, principal, slug, widget, now, expected_version))

    def move_widget(
        self, principal: Principal, slug: str, widget_id: str, index: int, expected_version: int | None = None
    ) -> Dashboard:
        require(principal, "editor")
        now = now_utc(self.clock)
        return self._changed(agg.move_widget(self.events, principal, slug, widget_id, index, now, expected_version))

    def remove_widget(
        self, principal: Principal, slug: str, widget_id: str, expected_version: int | None = None
    ) -> Dashboard:
        require(principal, "editor")
        now = now_utc(self.clock)
        return self._changed(agg.remove_widget(self.events, principal, slug, widget_id, now, expected_version))

    def open_draft(self, principal: Principal, slug: str, expected_version: int | None = None) -> Dashboard:
        require(principal, "editor")
        return self._changed(agg.open_draft(self.events, principal, slug, now_utc(self.clock), expected_version))

    def publish(
        self,
        principal: Principal,
        slug: str,
        release_notes: str | None = None,
        expected_version: int | None = None,
    ) -> Dashboard:
        require(principal, "editor")
        now = now_utc(self.clock)
        return self._changed(agg.publish(self.events, principal, slug, now, release_notes, expected_version))

    def archive(self, principal: Principal, slug: str, expected_version: int | None = None) -> Dashboard:
        require(principal, "editor")
        return self._changed(agg.archive(self.events, principal, slug, now_utc(self.clock), expected_version))

    def copy(self, principal: Principal, slug: str, new_slug: str, name: str | None = None) -> Dashboard:
        require(principal, "editor")
        return self._changed(agg.copy(self.events, principal, slug, new_slug, now_utc(self.clock), name))


__all__ = [
    "ANONYMOUS",
    "CURRENT",
    "DRAFT",
    "DashboardCache",
    "DashboardsService",
    "ResolvedDashboard",
]
