"""The dashboard aggregate's state: its versions and definitions, and the fold of its
stream's events (``Dashboard.apply``). The commands that append those events are in
``domain.dashboards``, which re-exports these names."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from domain.events import RecordedEvent
from domain.widgets import Widget, widget_from

DIRECTORY_STREAM = "dashboards"
STREAM_PREFIX = "dashboard:"
DRAFT, PUBLISHED, ARCHIVED, INACTIVE = "DRAFT", "PUBLISHED", "ARCHIVED", "INACTIVE"
STATES = (DRAFT, PUBLISHED, ARCHIVED, INACTIVE)
PUBLIC, PRIVATE = "PUBLIC", "PRIVATE"
VISIBILITIES = (PUBLIC, PRIVATE)

CREATED = "dashboard_created"
DRAFT_OPENED = "dashboard_draft_opened"
DETAILS_CHANGED = "dashboard_details_changed"
WIDGET_ADDED = "dashboard_widget_added"
WIDGET_UPDATED = "dashboard_widget_updated"
WIDGET_MOVED = "dashboard_widget_moved"
WIDGET_REMOVED = "dashboard_widget_removed"
PUBLISHED_EVENT = "dashboard_published"
ARCHIVED_EVENT = "dashboard_archived"
LISTED = "dashboard_listed"

MAX_WIDGETS = 100
MAX_TAGS = 20
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
TAG_PATTERN = re.compile(r"[a-z0-9][a-z0-9 _-]{0,39}")


def stream_of(slug: str) -> str:
    return STREAM_PREFIX + slug


@dataclass(frozen=True, slots=True)
class Definition:
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    visibility: str = PRIVATE
    widgets: tuple[Widget, ...] = ()

    def widget(self, widget_id: str) -> Widget | None:
        return next((w for w in self.widgets if w.id == widget_id), None)

    def as_properties(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "tags": list(self.tags),
            "visibility": self.visibility,
            "widgets": [w.as_properties() for w in self.widgets],
        }


def definition_from(props: Mapping[str, Any]) -> Definition:
    return Definition(
        name=props["name"],
        description=props.get("description") or "",
        tags=tuple(props.get("tags") or ()),
        visibility=props.get("visibility") or PRIVATE,
        widgets=tuple(widget_from(w) for w in props.get("widgets") or ()),
    )


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of a dashboard's history: what happened, when, by whom."""

    stream_version: int
    type: str
    at: datetime
    by: str
    by_key_id: str | None
    summary: str


@dataclass(frozen=True, slots=True)
class Version:
    number: int
    state: str
    definition: Definition
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    release_notes: str | None = None
    published_at: datetime | None = None
    published_by: str | None = None


@dataclass
class Dashboard:
    """The fold of one dashboard's stream; ``version`` is the stream's version."""

    slug: str
    versions: list[Version] = field(default_factory=list)
    history: list[Change] = field(default_factory=list)
    copied_from: str | None = None
    version: int = 0

    @property
    def exists(self) -> bool:
        return bool(self.versions)

    def in_state(self, state: str) -> Version | None:
        return next((v for v in reversed(self.versions) if v.state == state), None)

    @property
    def draft(self) -> Version | None:
        return self.in_state(DRAFT)

    @property
    def published(self) -> Version | None:
        return self.in_state(PUBLISHED)

    @property
    def latest(self) -> Version:
        return self.versions[-1]

    @property
    def current(self) -> Version:
        """What the dashboard shows by default: the published version, else the latest one."""
        return self.published or self.latest

    @property
    def state(self) -> str:
        return self.current.state

    def apply(self, events: Iterable[RecordedEvent]) -> None:
        for recorded in events:
            _apply(self, recorded)
            self.version = recorded.version or self.version


def _by(recorded: RecordedEvent) -> tuple[str, str | None]:
    by = recorded.properties.get("by") or {}
    return by.get("name") or "unknown", by.get("keyId")


def _edit_draft(dashboard: Dashboard, recorded: RecordedEvent, change: Callable[[Definition], Definition]) -> None:
    name, _ = _by(recorded)
    for i, version in enumerate(dashboard.versions):
        if version.state == DRAFT:
            dashboard.versions[i] = replace(
                version, definition=change(version.definition), updated_at=recorded.occurred_at, updated_by=name
            )


def _apply(dashboard: Dashboard, recorded: RecordedEvent) -> None:
    props = recorded.properties
    at = recorded.occurred_at
    name, key_id = _by(recorded)
    kind = recorded.type
    summary = kind.removeprefix("dashboard_").replace("_", " ")
    if kind == CREATED:
        dashboard.copied_from = props.get("copiedFrom")
        dashboard.versions.append(Version(1, DRAFT, definition_from(props["definition"]), at, name, at, name))
    elif kind == DRAFT_OPENED:
        source = next(v for v in dashboard.versions if v.number == props["fromVersion"])
        dashboard.versions.append(Version(props["version"], DRAFT, source.definition, at, name, at, name))
        summary = f"draft {props['version']} opened from version {props['fromVersion']}"
    elif kind == DETAILS_CHANGED:
        fields = {k: v for k, v in props["details"].items()}
        _edit_draft(
            dashboard,
            recorded,
            lambda d: replace(
                d,
                name=fields.get("name", d.name),
                description=fields.get("description", d.description),
                tags=tuple(fields.get("tags", d.tags)),
                visibility=fields.get("visibility", d.visibility),
            ),
        )
        summary = f"changed {', '.join(sorted(fields))}"
    elif kind == WIDGET_ADDED:
        widget = widget_from(props["widget"])
        at_index = props.get("index")

        def add(d: Definition) -> Definition:
            widgets = list(d.widgets)
            widgets.insert(len(widgets) if at_index is None else at_index, widget)
            return replace(d, widgets=tuple(widgets))

        _edit_draft(dashboard, recorded, add)
        summary = f"added {widget.kind} widget {widget.id}"
    elif kind == WIDGET_UPDATED:
        widget = widget_from(props["widget"])
        _edit_draft(
            dashboard,
            recorded,
            lambda d: replace(d, widgets=tuple(widget if w.id == widget.id else w for w in d.widgets)),
        )
        summary = f"updated widget {widget.id}"
    elif kind == WIDGET_MOVED:
        widget_id, index = props["widgetId"], props["index"]

        def move(d: Definition) -> Definition:
            widgets = [w for w in d.widgets if w.id != widget_id]
            widgets.insert(index, next(w for w in d.widgets if w.id == widget_id))
            return replace(d, widgets=tuple(widgets))

        _edit_draft(dashboard, recorded, move)
        summary = f"moved widget {widget_id} to position {index}"
    elif kind == WIDGET_REMOVED:
        widget_id = props["widgetId"]
        _edit_draft(dashboard, recorded, lambda d: replace(d, widgets=tuple(w for w in d.widgets if w.id != widget_id)))
        summary = f"removed widget {widget_id}"
    elif kind == PUBLISHED_EVENT:
        for i, version in enumerate(dashboard.versions):
            if version.state == PUBLISHED:
                dashboard.versions[i] = replace(version, state=INACTIVE)
            elif version.state == DRAFT:
                dashboard.versions[i] = replace(
                    version,
                    state=PUBLISHED,
                    release_notes=props.get("releaseNotes"),
                    published_at=at,
                    published_by=name,
                )
        summary = f"published version {props['version']}"
    elif kind == ARCHIVED_EVENT:
        kept = []
        for version in dashboard.versions:
            if version.state == PUBLISHED:
                kept.append(replace(version, state=ARCHIVED, updated_at=at, updated_by=name))
            elif version.state != DRAFT or not props.get("dropDraft", True):
                kept.append(version)
        dashboard.versions = kept
        summary = "archived"
    dashboard.history.append(Change(recorded.version or 0, kind, at, name, key_id, summary))
