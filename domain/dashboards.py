"""Dashboards as event-sourced aggregates: one stream per dashboard, ``dashboard:<slug>``.

A dashboard is a series of **versions**, each a definition (name, description, tags,
visibility, ordered widgets) in one state, as in PDoA: ``DRAFT → PUBLISHED → ARCHIVED``,
and ``INACTIVE`` for a published version a newer one replaced. At most one draft exists:
editing a dashboard that has none opens one, a copy of its latest version. Publishing the
draft (with release notes) makes the previous published version INACTIVE; archiving
retires the published version (and drops the draft) so that nothing of it is live.

The slug is the stream's name, so it is unique for free (creating appends at version 0)
and never changes. Every event records who made the change (``by``: the API key's id and
name), so the stream is the audit log. Commands append at the version they read: with an
``expected_version`` from the caller, a stale one is a ``ConcurrencyError`` (the API's
``CONFLICT``) and never a lost edit; without one, a race is retried against the new state.

The stream ``dashboards`` lists the slugs (``dashboard_listed``) so that they can be
enumerated without a projection; a dashboard is listed right after its creation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from domain.access import Principal
from domain.aggregate import decide_and_append
from domain.dashboard_state import (  # noqa: F401 - re-exported: the aggregate's names live here too
    ARCHIVED,
    ARCHIVED_EVENT,
    CREATED,
    DETAILS_CHANGED,
    DIRECTORY_STREAM,
    DRAFT,
    DRAFT_OPENED,
    INACTIVE,
    LISTED,
    MAX_TAGS,
    MAX_WIDGETS,
    PRIVATE,
    PUBLIC,
    PUBLISHED,
    PUBLISHED_EVENT,
    SLUG,
    STATES,
    STREAM_PREFIX,
    TAG_PATTERN,
    VISIBILITIES,
    WIDGET_ADDED,
    WIDGET_MOVED,
    WIDGET_REMOVED,
    WIDGET_UPDATED,
    Change,
    Dashboard,
    Definition,
    Version,
    definition_from,
    stream_of,
)
from domain.errors import ConcurrencyError, FieldError, NotFound, ValidationError
from domain.events import Event
from domain.ports import EventStore
from domain.widgets import Widget, check_sections, is_text, parse_widget


def load(store: EventStore, slug: str) -> Dashboard:
    dashboard = Dashboard(slug)
    dashboard.apply(store.read_stream(stream_of(slug)))
    return dashboard


def load_or_missing(store: EventStore, slug: str) -> Dashboard:
    dashboard = load(store, slug)
    if not dashboard.exists:
        raise NotFound(f"no dashboard {slug!r}")
    return dashboard


def listed_slugs(store: EventStore, after_version: int | None = None) -> tuple[list[str], int]:
    """The slugs of the directory stream after ``after_version`` and its version."""
    events = store.read_stream(DIRECTORY_STREAM, after_version=after_version)
    return [e.properties["slug"] for e in events if e.type == LISTED], (events[-1].version or 0) if events else (
        after_version or 0
    )


# --- Validation ---------------------------------------------------------------------------


def check_slug(slug: str, field_name: str = "slug") -> None:
    if not isinstance(slug, str) or not SLUG.fullmatch(slug):
        raise ValidationError(
            [
                FieldError(
                    field_name,
                    f"{str(slug)[:80]!r} is not a slug: 1 to 64 lowercase letters, digits and -,"
                    " starting and ending with a letter or digit",
                )
            ]
        )


def check_details(details: Mapping[str, Any], creating: bool) -> dict[str, Any]:
    """The changed fields among name, description, tags, visibility; ``ValidationError`` naming each bad one."""
    errors = []
    clean: dict[str, Any] = {}
    unknown = sorted(set(details) - {"name", "description", "tags", "visibility"})
    for name in unknown:
        errors.append(FieldError(name, "is not a dashboard field (name, description, tags, visibility)"))
    if "name" in details or creating:
        name = details.get("name")
        if not is_text(name) or not name.strip() or len(name) > 200:
            errors.append(FieldError("name", "is required: 1 to 200 characters"))
        else:
            clean["name"] = name.strip()
    if details.get("description") is not None:
        description = details["description"]
        if not is_text(description) or len(description) > 20_000:
            errors.append(FieldError("description", "must be text of at most 20000 characters"))
        else:
            clean["description"] = description
    if details.get("tags") is not None:
        tags = details["tags"]
        if not isinstance(tags, list | tuple) or len(tags) > MAX_TAGS:
            errors.append(FieldError("tags", f"must be a list of at most {MAX_TAGS} tags"))
        else:
            for i, tag in enumerate(tags):
                if not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag):
                    message = f"{str(tag)[:40]!r} is not a tag: 1 to 40 lowercase letters, digits, space, _ or -"
                    errors.append(FieldError(f"tags[{i}]", message))
            clean["tags"] = sorted(set(tags)) if not errors else []
    if details.get("visibility") is not None:
        if details["visibility"] not in VISIBILITIES:
            errors.append(FieldError("visibility", f"must be one of {', '.join(VISIBILITIES)}"))
        else:
            clean["visibility"] = details["visibility"]
    if errors:
        raise ValidationError(errors)
    return clean


# --- Commands -------------------------------------------------------------------------------


def _by_of(principal: Principal) -> dict[str, Any]:
    return {"keyId": principal.key_id, "name": principal.name}


def _event(kind: str, now: datetime, principal: Principal, **props: Any) -> Event:
    return Event(type=kind, occurred_at=now, properties={**props, "by": _by_of(principal)})


def _command(
    store: EventStore,
    slug: str,
    expected_version: int | None,
    decide: Callable[[Dashboard], Sequence[Event]],
) -> Dashboard:
    """Decide against the dashboard's state and append; returns the new state."""

    if not isinstance(slug, str) or not SLUG.fullmatch(slug):
        raise NotFound(f"no dashboard {slug[:80]!r}")

    def decided(dashboard: Dashboard):
        if not dashboard.exists:
            raise NotFound(f"no dashboard {slug!r}")
        if expected_version is not None and dashboard.version != expected_version:
            raise ConcurrencyError(stream_of(slug), expected_version, dashboard.version)
        events = list(decide(dashboard))
        if not events:
            raise _NoChange
        return events, lambda _version: None

    with contextlib.suppress(_NoChange):
        decide_and_append(store, stream_of(slug), lambda s: load(s, slug), decided)
    return load(store, slug)


class _NoChange(Exception):
    """A command that changes nothing (e.g. opening a draft that is open): nothing to append."""


def _ensure_listed(store: EventStore, slug: str, now: datetime) -> None:
    def decide(directory: _Directory):
        if slug in directory.slugs:
            raise _NoChange
        return [Event(type=LISTED, occurred_at=now, properties={"slug": slug})], lambda _v: None

    def load_directory(s: EventStore) -> _Directory:
        slugs, version = listed_slugs(s)
        return _Directory(set(slugs), version)

    with contextlib.suppress(_NoChange):
        decide_and_append(store, DIRECTORY_STREAM, load_directory, decide)


@dataclass
class _Directory:
    slugs: set[str]
    version: int


def create(
    store: EventStore,
    principal: Principal,
    slug: str,
    details: Mapping[str, Any],
    now: datetime,
    widgets: Sequence[Widget] = (),
    copied_from: str | None = None,
) -> Dashboard:
    """A new dashboard, its first version a DRAFT; ``ValidationError`` when the slug is taken."""
    check_slug(slug)
    clean = check_details(details, creating=True)
    check_sections(tuple(widgets))
    definition = replace(
        Definition(name=clean["name"]),
        description=clean.get("description", ""),
        tags=tuple(clean.get("tags", ())),
        visibility=clean.get("visibility", PRIVATE),
        widgets=tuple(widgets),
    )

    def decide(dashboard: Dashboard):
        if dashboard.exists:
            raise ValidationError([FieldError("slug", f"a dashboard {slug!r} already exists")])
        props: dict[str, Any] = {"slug": slug, "definition": definition.as_properties()}
        if copied_from is not None:
            props["copiedFrom"] = copied_from
        return [_event(CREATED, now, principal, **props)], lambda _v: None

    decide_and_append(store, stream_of(slug), lambda s: load(s, slug), decide)
    _ensure_listed(store, slug, now)
    return load(store, slug)


def _draft_events(dashboard: Dashboard, principal: Principal, now: datetime) -> list[Event]:
    """Opening a draft when there is none (a copy of the latest version)."""
    if dashboard.draft is not None:
        return []
    latest = dashboard.latest
    number = max(v.number for v in dashboard.versions) + 1
    return [_event(DRAFT_OPENED, now, principal, version=number, fromVersion=latest.number)]


def _draft_after(dashboard: Dashboard, events: list[Event]) -> Definition:
    draft = dashboard.draft
    if draft is not None:
        return draft.definition
    return dashboard.latest.definition if events else dashboard.current.definition


def open_draft(
    store: EventStore, principal: Principal, slug: str, now: datetime, expected_version: int | None = None
) -> Dashboard:
    """The dashboard with a draft: the existing one, or a new one copied from the latest version."""
    return _command(store, slug, expected_version, lambda d: _draft_events(d, principal, now))


def change_details(
    store: EventStore,
    principal: Principal,
    slug: str,
    details: Mapping[str, Any],
    now: datetime,
    expected_version: int | None = None,
) -> Dashboard:
    clean = check_details(details, creating=False)

    def decide(dashboard: Dashboard) -> list[Event]:
        events = _draft_events(dashboard, principal, now)
        if not clean:
            return events
        return [*events, _event(DETAILS_CHANGED, now, principal, details=clean)]

    return _command(store, slug, expected_version, decide)


def _index_error(index: int | None, size: int, field_name: str = "index") -> None:
    if index is not None and not 0 <= index <= size:
        raise ValidationError([FieldError(field_name, f"must be 0 to {size}, got {index}")])


def add_widget(
    store: EventStore,
    principal: Principal,
    slug: str,
    widget: Mapping[str, Any],
    now: datetime,
    index: int | None = None,
    expected_version: int | None = None,
) -> Dashboard:
    parsed = parse_widget(widget)

    def decide(dashboard: Dashboard) -> list[Event]:
        events = _draft_events(dashboard, principal, now)
        definition = _draft_after(dashboard, events)
        if definition.widget(parsed.id) is not None:
            raise ValidationError([FieldError("widget.id", f"the dashboard already has a widget {parsed.id!r}")])
        if len(definition.widgets) >= MAX_WIDGETS:
            raise ValidationError([FieldError("widget", f"a dashboard holds at most {MAX_WIDGETS} widgets")])
        _index_error(index, len(definition.widgets))
        check_sections((*definition.widgets, parsed))
        return [*events, _event(WIDGET_ADDED, now, principal, widget=parsed.as_properties(), index=index)]

    return _command(store, slug, expected_version, decide)


def _existing(definition: Definition, widget_id: str, field_name: str = "widgetId") -> Widget:
    found = definition.widget(widget_id)
    if found is None:
        known = ", ".join(w.id for w in definition.widgets) or "none"
        raise ValidationError([FieldError(field_name, f"no widget {widget_id!r} (widgets: {known})")])
    return found


def update_widget(
    store: EventStore,
    principal: Principal,
    slug: str,
    widget: Mapping[str, Any],
    now: datetime,
    expected_version: int | None = None,
) -> Dashboard:
    """Replace a widget (same id) with a new definition of it."""
    parsed = parse_widget(widget)

    def decide(dashboard: Dashboard) -> list[Event]:
        events = _draft_events(dashboard, principal, now)
        definition = _draft_after(dashboard, events)
        _existing(definition, parsed.id, "widget.id")
        check_sections(tuple(parsed if w.id == parsed.id else w for w in definition.widgets))
        return [*events, _event(WIDGET_UPDATED, now, principal, widget=parsed.as_properties())]

    return _command(store, slug, expected_version, decide)


def move_widget(
    store: EventStore,
    principal: Principal,
    slug: str,
    widget_id: str,
    index: int,
    now: datetime,
    expected_version: int | None = None,
) -> Dashboard:
    """Put a widget at position ``index`` of the ordered list."""

    def decide(dashboard: Dashboard) -> list[Event]:
        events = _draft_events(dashboard, principal, now)
        definition = _draft_after(dashboard, events)
        _existing(definition, widget_id)
        _index_error(index, len(definition.widgets) - 1)
        return [*events, _event(WIDGET_MOVED, now, principal, widgetId=widget_id, index=index)]

    return _command(store, slug, expected_version, decide)


def remove_widget(
    store: EventStore,
    principal: Principal,
    slug: str,
    widget_id: str,
    now: datetime,
    expected_version: int | None = None,
) -> Dashboard:
    def decide(dashboard: Dashboard) -> list[Event]:
        events = _draft_events(dashboard, principal, now)
        definition = _draft_after(dashboard, events)
        _existing(definition, widget_id)
        inside = [w.id for w in definition.widgets if w.layout.section == widget_id]
        if inside:
            message = f"section {widget_id!r} still holds {', '.join(inside)}: move or remove them first"
            raise ValidationError([FieldError("widgetId", message)])
        return [*events, _event(WIDGET_REMOVED, now, principal, widgetId=widget_id)]

    return _command(store, slug, expected_version, decide)


def publish(
    store: EventStore,
    principal: Principal,
    slug: str,
    now: datetime,
    release_notes: str | None = None,
    expected_version: int | None = None,
) -> Dashboard:
    """Publish the draft; the previously published version becomes INACTIVE."""
    if release_notes is not None and (not is_text(release_notes) or len(release_notes) > 20_000):
        raise ValidationError([FieldError("releaseNotes", "must be valid Unicode text of at most 20000 characters")])

    def decide(dashboard: Dashboard) -> list[Event]:
        draft = dashboard.draft
        if draft is None:
            raise ValidationError([FieldError("slug", f"dashboard {slug!r} has no draft to publish; edit it first")])
        return [_event(PUBLISHED_EVENT, now, principal, version=draft.number, releaseNotes=release_notes)]

    return _command(store, slug, expected_version, decide)


def archive(
    store: EventStore, principal: Principal, slug: str, now: datetime, expected_version: int | None = None
) -> Dashboard:
    """Retire the published version (ARCHIVED) and drop any draft: nothing of it stays live."""

    def decide(dashboard: Dashboard) -> list[Event]:
        if dashboard.published is None:
            raise ValidationError([FieldError("slug", f"dashboard {slug!r} has no published version to archive")])
        return [_event(ARCHIVED_EVENT, now, principal, dropDraft=True)]

    return _command(store, slug, expected_version, decide)


def copy(
    store: EventStore,
    principal: Principal,
    slug: str,
    new_slug: str,
    now: datetime,
    name: str | None = None,
) -> Dashboard:
    """A new dashboard (a DRAFT) with the definition of ``slug``'s latest version."""
    check_slug(new_slug, "newSlug")
    if not SLUG.fullmatch(slug):
        raise NotFound(f"no dashboard {slug[:80]!r}")
    source = load_or_missing(store, slug).latest.definition
    details = {
        "name": name if name is not None else f"{source.name} (copy)"[:200],
        "description": source.description,
        "tags": list(source.tags),
        "visibility": source.visibility,
    }
    return create(store, principal, new_slug, details, now, source.widgets, copied_from=slug)
