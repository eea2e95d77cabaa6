"""GraphQL for dashboards: ``dashboards``, ``dashboard`` (every widget's data resolved in
one round trip, one freshness watermark), ``dashboardVersions``, ``dashboardHistory``, the
edit mutations, and the ``dashboardUpdated`` subscription.

Visibility (``services.dashboards``): the queries and the subscription also answer callers
without a key, who see PUBLIC published dashboards and nothing else (a private slug is
``NOT_FOUND``, as a slug nobody used). A key that is sent must be valid: a bad one is
``UNAUTHENTICATED``, not anonymous. Mutations need ``editor`` (or ``admin``).

``dashboardUpdated`` pushes the resolved dashboard again whenever a widget's data changes
(the change markers of its metrics, gauges and feeds, as ``seriesUpdated``), its definition
or one of its datasets changes (their streams' versions, seen within about half a second) or
a new minute starts (sliding windows). Viewers with the same arguments and rights share one
recomputation and one rendering per change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Callable
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from api.auth import caller, require_scope
from api.context import Pulse
from api.graphql_dashboard_types import (
    ChartKind,
    ColumnFormat,
    Dashboard,
    DashboardChange,
    DashboardState,
    DashboardVersion,
    SourceKind,
    Visibility,
    WidgetComparison,
    WidgetKind,
    change_of,
    dashboard_of,
    resolved_of,
    version_of,
)
from api.graphql_live import LiveValue
from api.graphql_metrics import Resolution, bucketing_of, guarded
from domain import dashboards as agg
from domain.access import Principal
from services.dashboards import ANONYMOUS, CURRENT, DRAFT, REFRESH_SECONDS

# --- Inputs -----------------------------------------------------------------------------------


@strawberry.input(description="Where a widget sits: on the 12-column grid, or in a SECTION widget (and tab).")
class LayoutInput:
    x: int = 0
    y: int = 0
    w: int = 12
    h: int = 2
    section: str | None = None
    tab: str | None = None


@strawberry.input(description="The query a widget's data comes from; which fields apply depends on kind.")
class SourceInput:
    kind: SourceKind  # type: ignore[valid-type]
    metric: str | None = None
    resolution: Resolution | None = None
    last: int | None = None
    compare_to: WidgetComparison | None = None  # type: ignore[valid-type]
    dimension: str | None = None
    top: int | None = None
    gauge: str | None = None
    keys: list[str] | None = None
    event_type: str | None = None
    limit: int | None = None
    dataset: str | None = None
    fields: list[str] | None = None
    metrics: list[str] | None = None
    severities: list[str] | None = strawberry.field(default=None, description="ALERTS: INFO, WARNING, CRITICAL.")
    rules: list[str] | None = strawberry.field(default=None, description="ALERTS: only these rules.")


@strawberry.input
class ColumnInput:
    field: str
    label: str | None = None
    format: ColumnFormat | None = None  # type: ignore[valid-type]


@strawberry.input
class WidgetInput:
    id: str
    kind: WidgetKind  # type: ignore[valid-type]
    title: str
    description: str | None = None
    layout: LayoutInput | None = None
    source: SourceInput | None = None
    chart: ChartKind | None = None  # type: ignore[valid-type]
    markdown: str | None = None
    image_url: str | None = None
    alt: str | None = None
    tabs: list[str] | None = None
    columns: list[ColumnInput] | None = None
    format: ColumnFormat | None = None  # type: ignore[valid-type]


@strawberry.input
class DashboardDetailsInput:
    name: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    visibility: Visibility | None = None  # type: ignore[valid-type]


@strawberry.input
class DashboardInput:
    slug: str = strawberry.field(description="Unique, URL-safe, for good: lowercase letters, digits and -.")
    name: str
    description: str | None = None
    tags: list[str] | None = None
    visibility: Visibility | None = None  # type: ignore[valid-type]
    widgets: list[WidgetInput] | None = None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def wire(value: Any) -> Any:
    """An input as the wire-named mapping the domain validates (None fields left out)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [wire(item) for item in value]
    if dataclasses.is_dataclass(value):
        return {
            _camel(f.name): wire(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    return value


# --- Callers ----------------------------------------------------------------------------------


def viewer(info: Info) -> tuple[Pulse, Principal]:
    """The caller of a dashboard query: anonymous when auth is on and no key was sent."""
    pulse = info.context["pulse"]
    req = info.context["request"]
    sent = req.headers.get("Authorization") or req.headers.get("X-Api-Key") or req.args.get("token")
    if pulse.settings.auth and not sent:
        return pulse, ANONYMOUS
    return caller(info)


def editor(info: Info) -> tuple[Pulse, Principal]:
    return info.context["pulse"], require_scope(info, "editor")


def _which(version: int | None, draft: bool) -> str | int:
    return DRAFT if draft else CURRENT if version is None else version


def _edited(dashboard: agg.Dashboard) -> Dashboard:
    """A mutation's answer: the version edits apply to (the draft), else the current one."""
    return dashboard_of(dashboard, dashboard.draft or dashboard.current)


# --- Live -------------------------------------------------------------------------------------


def _same(a: Dashboard, b: Dashboard) -> bool:
    """Nothing a viewer sees changed: edits to a draft they do not view are not pushed."""
    return dataclasses.replace(a, computed_at=None, stream_version=0) == dataclasses.replace(
        b, computed_at=None, stream_version=0
    )


def live_dashboard(pulse: Pulse, principal: Principal, slug: str, which: str | int) -> LiveValue[Dashboard]:
    """The ``dashboard`` query's answer, live on its widgets' markers, its stream's version
    and the minute (windows that slide)."""
    service = pulse.dashboards
    bucketing = bucketing_of(pulse)
    _, version = guarded(lambda: service.visible(principal, slug, which))

    def slot(now: float) -> tuple[int, float | None]:
        # One growing integer: the definition's stream version and its datasets' versions, then the minute.
        # ...and the alert rules' streams' versions, if it shows alerts.
        changes = service.stream_version(slug) + service.datasets_version(version) + service.alerts_version(version)
        return changes * 10**10 + int(now // 60), min(REFRESH_SECONDS, 60 - now % 60)

    return LiveValue(
        pulse,
        principal,
        ("dashboard", slug, which, principal.allows("read")),
        service.markers(version),
        lambda now: resolved_of(bucketing, service.resolve(principal, slug, which), not principal.allows("read")),
        slot,
        same=_same,
    )


async def _follow(
    live: LiveValue[Dashboard], first: Dashboard, renew: Callable[[], LiveValue[Dashboard]]
) -> AsyncGenerator[Dashboard, None]:
    """``first`` and every change; when the definition changes, follow the markers of the new one."""
    yield first
    last = first
    while True:
        inner = live.stream(last)
        await anext(inner)  # ``last``, already pushed
        try:
            async for pushed in inner:
                # A new definition (without a key streamVersion is hidden: 0; a publish changes version).
                changed = (pushed.stream_version, pushed.version) != (last.stream_version, last.version)
                last = pushed
                yield pushed
                if changed:
                    break
        finally:
            await inner.aclose()
        live = renew()


# --- Root types -------------------------------------------------------------------------------


@strawberry.type
class DashboardsQuery:
    @strawberry.field(
        description="Dashboards, by name. Without a key: PUBLIC published ones only. `state`: those with a"
        " version in that state; `search`: in names and descriptions."
    )
    def dashboards(
        self,
        info: Info,
        state: DashboardState | None = None,  # type: ignore[valid-type]
        tag: str | None = None,
        search: str | None = None,
    ) -> list[Dashboard]:
        pulse, principal = viewer(info)
        chosen = None if state is None else state.value
        found = guarded(lambda: pulse.dashboards.listed(principal, chosen, tag, search))
        public = not principal.allows("read")
        return [dashboard_of(dashboard, version, public=public) for dashboard, version in found]

    @strawberry.field(
        description="A dashboard with every widget's data resolved at one instant (one watermark): the published"
        " version by default, else `version` or the `draft` (those need read). NOT_FOUND for what you may not see."
    )
    def dashboard(self, info: Info, slug: str, version: int | None = None, draft: bool = False) -> Dashboard:
        pulse, principal = viewer(info)
        bucketing = bucketing_of(pulse)
        resolved = guarded(lambda: pulse.dashboards.resolve(principal, slug, _which(version, draft)))
        return resolved_of(bucketing, resolved, not principal.allows("read"))

    @strawberry.field(description="Every version of a dashboard, newest first (without a key: the published one).")
    def dashboard_versions(self, info: Info, slug: str) -> list[DashboardVersion]:
        pulse, principal = viewer(info)
        public = not principal.allows("read")
        return [version_of(v, public) for v in guarded(lambda: pulse.dashboards.versions(principal, slug))]

    @strawberry.field(description="A dashboard's audit log: every change, when and by whom. Needs read.")
    def dashboard_history(self, info: Info, slug: str) -> list[DashboardChange]:
        pulse, principal = caller(info)
        return [change_of(c) for c in guarded(lambda: pulse.dashboards.history(principal, slug))]


@strawberry.type
class DashboardsMutation:
    @strawberry.mutation(description="A new dashboard; its first version is a DRAFT. Needs editor.")
    def create_dashboard(self, info: Info, input: DashboardInput) -> Dashboard:
        pulse, principal = editor(info)
        fields = wire(input)
        widgets = fields.pop("widgets", [])
        slug = fields.pop("slug")
        return _edited(guarded(lambda: pulse.dashboards.create(principal, slug, fields, widgets)))

    @strawberry.mutation(description="Open the draft of a dashboard (or return the open one). Needs editor.")
    def edit_dashboard(self, info: Info, slug: str, expected_version: int | None = None) -> Dashboard:
        pulse, principal = editor(info)
        return _edited(guarded(lambda: pulse.dashboards.open_draft(principal, slug, expected_version)))

    @strawberry.mutation(description="Change name, description, tags or visibility of the draft. Needs editor.")
    def update_dashboard(
        self, info: Info, slug: str, input: DashboardDetailsInput, expected_version: int | None = None
    ) -> Dashboard:
        pulse, principal = editor(info)
        return _edited(guarded(lambda: pulse.dashboards.change_details(principal, slug, wire(input), expected_version)))

    @strawberry.mutation(description="Add a widget to the draft (at `index`, else last). Needs editor.")
    def add_widget(
        self, info: Info, slug: str, widget: WidgetInput, index: int | None = None, expected_version: int | None = None
    ) -> Dashboard:
        pulse, principal = editor(info)
        return _edited(
            guarded(lambda: pulse.dashboards.add_widget(principal, slug, wire(widget), index, expected_version))
        )

    @strawberry.mutation(description="Replace the draft's widget with the same id. Needs editor.")
    def update_widget(
        self, info: Info, slug: str, widget: WidgetInput, expected_version: int | None = None
    ) -> Dashboard:
        pulse, principal = editor(info)
        return _edited(guarded(lambda: pulse.dashboards.update_widget(principal, slug, wire(widget), expected_version)))

    @strawberry.mutation(description="Move a widget of the draft to position `index`. Needs editor.")
    def move_widget(
        self, info: Info, slug: str, widget_id: str, index: int, expected_version: int | None = None
    ) -> Dashboard:
        pulse, principal = editor(info)
        return _edited(
            guarded(lambda: pulse.dashboards.move_widget(principal, slug, widget_id, index, expected_version))
        )

    @strawberry.mutation(description="Remove a widget from the draft. Needs editor.")
    def remove_widget(self, info: Info, slug: str, widget_id: str, expected_version: int | None = None) -> Dashboard:
        pulse, principal = editor(info)
        return _edited(guarded(lambda: pulse.dashboards.remove_widget(principal, slug, widget_id, expected_version)))

    @strawberry.mutation(
        description="Publish the draft with release notes; the previous published version becomes INACTIVE."
    )
    def publish_dashboard(
        self, info: Info, slug: str, release_notes: str | None = None, expected_version: int | None = None
    ) -> Dashboard:
        pulse, principal = editor(info)
        found = guarded(lambda: pulse.dashboards.publish(principal, slug, release_notes, expected_version))
        return dashboard_of(found, found.current)

    @strawberry.mutation(description="Archive the published version and drop the draft. Needs editor.")
    def archive_dashboard(self, info: Info, slug: str, expected_version: int | None = None) -> Dashboard:
        pulse, principal = editor(info)
        found = guarded(lambda: pulse.dashboards.archive(principal, slug, expected_version))
        return dashboard_of(found, found.current)

    @strawberry.mutation(description="A new dashboard (a DRAFT) from the latest version of another. Needs editor.")
    def copy_dashboard(self, info: Info, slug: str, new_slug: str, name: str | None = None) -> Dashboard:
        pulse, principal = editor(info)
        return _edited(guarded(lambda: pulse.dashboards.copy(principal, slug, new_slug, name)))


@strawberry.type
class DashboardsSubscription:
    @strawberry.subscription(
        description="The `dashboard` query, live: the resolved dashboard, then again whenever a widget's data or"
        " the definition changes. Readable without a key for PUBLIC published dashboards."
    )
    async def dashboard_updated(
        self, info: Info, slug: str, version: int | None = None, draft: bool = False
    ) -> AsyncGenerator[Dashboard, None]:
        pulse, principal = viewer(info)
        which = _which(version, draft)

        def renew() -> LiveValue[Dashboard]:
            return live_dashboard(pulse, principal, slug, which)

        live = renew()
        first = live.current()  # NOT_FOUND and the like: the stream's only payload
        return _follow(live, first, renew)


__all__ = ["DashboardsMutation", "DashboardsQuery", "DashboardsSubscription"]
