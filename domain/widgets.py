"""Dashboard widgets: what each kind shows and where its data comes from, validated.

A widget's data source is a query Pulse already answers, so no widget needs counting code
of its own: a metric ``SERIES`` (optionally with the previous period), a ``BREAKDOWN`` of a
metric by a dimension (top N), a ``GAUGE`` (latest value per key) or the ``RECENT_EVENTS``
feed. Which kinds take which sources is ``SOURCES_OF``; ``TEXT``, ``IMAGE`` and ``SECTION``
take none. ``ALERTS`` lists the alert-rule instances alerting now (``ALERTS`` source, optional:
filtered by severities and rule names).

Widgets are stored in the dashboard's events as their ``as_properties`` and read back with
``widget_from``; ``parse_widget`` turns a caller's mapping into a ``Widget`` or raises
``ValidationError`` whose fields name the path (``widget.source.metric``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.alerts import SEVERITIES
from domain.errors import FieldError, ValidationError
from domain.events import EVENT_TYPE

TEXT, IMAGE, SECTION, KPI, CHART, TABLE, GAUGE, RECENT_EVENTS, ALERTS = (
    "TEXT",
    "IMAGE",
    "SECTION",
    "KPI",
    "CHART",
    "TABLE",
    "GAUGE",
    "RECENT_EVENTS",
    "ALERTS",
)
KINDS = (TEXT, IMAGE, SECTION, KPI, CHART, TABLE, GAUGE, RECENT_EVENTS, ALERTS)
CHART_KINDS = ("LINE", "COLUMN", "BAR", "STACKED_COLUMN", "PIE", "DONUT")
#: Data sources: the queries Pulse answers.
S_SERIES, S_BREAKDOWN, S_GAUGE, S_RECENT, S_DATASET = "SERIES", "BREAKDOWN", "GAUGE", "RECENT_EVENTS", "DATASET"
#: The alert-rule instances alerting now (FIRING or RECOVERING).
S_ALERTS = "ALERTS"
SOURCE_KINDS = (S_SERIES, S_BREAKDOWN, S_GAUGE, S_RECENT, S_DATASET, S_ALERTS)
SOURCES_OF: dict[str, tuple[str, ...]] = {
    TEXT: (),
    IMAGE: (),
    SECTION: (),
    KPI: (S_SERIES,),
    CHART: (S_SERIES, S_BREAKDOWN, S_DATASET),
    TABLE: (S_BREAKDOWN, S_GAUGE, S_DATASET),
    GAUGE: (S_GAUGE,),
    RECENT_EVENTS: (S_RECENT,),
    ALERTS: (S_ALERTS,),
}
RESOLUTIONS = ("minute", "hour", "day")
COMPARISONS = ("previous_period", "same_period_last_week", "same_period_last_year")
COLUMN_FORMATS = ("NUMBER", "PERCENT", "CURRENCY", "TEXT", "DATETIME")
GRID_COLUMNS = 12
MAX_ROWS = 1000
MAX_TEXT = 20_000
MAX_TITLE = 200
MAX_TOP = 100
MAX_RECENT = 100
MAX_LAST = 1000
WIDGET_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a widget sits on the 12-column grid, or in which section (and tab)."""

    x: int = 0
    y: int = 0
    w: int = GRID_COLUMNS
    h: int = 2
    section: str | None = None
    tab: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """A query Pulse answers; which fields matter depends on ``kind``."""

    kind: str
    metric: str | None = None
    resolution: str = "hour"
    last: int | None = None
    compare_to: str | None = None
    dimension: str | None = None
    top: int = 10
    gauge: str | None = None
    keys: tuple[str, ...] | None = None
    event_type: str | None = None
    limit: int = 20
    dataset: str | None = None
    #: DATASET: the columns shown, in order (None: all).
    fields: tuple[str, ...] | None = None
    #: KPI over a SERIES: more metrics shown beside ``metric``, over the same range.
    metrics: tuple[str, ...] = ()
    #: ALERTS: only these severities / these rules (None: all).
    severities: tuple[str, ...] | None = None
    rules: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: which field of the rows, its heading and how to format it."""

    field: str
    label: str
    format: str = "NUMBER"


@dataclass(frozen=True, slots=True)
class Widget:
    id: str
    kind: str
    title: str
    description: str | None = None
    layout: Layout = field(default_factory=Layout)
    source: Source | None = None
    chart: str | None = None  # CHART: one of CHART_KINDS
    markdown: str | None = None  # TEXT
    image_url: str | None = None  # IMAGE
    alt: str | None = None  # IMAGE
    tabs: tuple[str, ...] = ()  # SECTION
    columns: tuple[Column, ...] = ()  # TABLE
    format: str = "NUMBER"  # KPI, GAUGE

    def as_properties(self) -> dict[str, Any]:
        source = self.source
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "description": self.description,
            "layout": {
                "x": self.layout.x,
                "y": self.layout.y,
                "w": self.layout.w,
                "h": self.layout.h,
                "section": self.layout.section,
                "tab": self.layout.tab,
            },
            "source": None if source is None else source_properties(source),
            "chart": self.chart,
            "markdown": self.markdown,
            "imageUrl": self.image_url,
            "alt": self.alt,
            "tabs": list(self.tabs),
            "columns": [{"field": c.field, "label": c.label, "format": c.format} for c in self.columns],
            "format": self.format,
        }


def source_properties(source: Source) -> dict[str, Any]:
    return {
        "kind": source.kind,
        "metric": source.metric,
        "resolution": source.resolution,
        "last": source.last,
        "compareTo": source.compare_to,
        "dimension": source.dimension,
        "top": source.top,
        "gauge": source.gauge,
        "keys": None if source.keys is None else list(source.keys),
        "eventType": source.event_type,
        "limit": source.limit,
        "dataset": source.dataset,
        "fields": None if source.fields is None else list(source.fields),
        "metrics": list(source.metrics),
        "severities": None if source.severities is None else list(source.severities),
        "rules": None if source.rules is None else list(source.rules),
    }


def source_from(src: Mapping[str, Any]) -> Source:
    """A source as stored (trusted: it was validated when recorded)."""
    return Source(
        kind=src["kind"],
        metric=src.get("metric"),
        resolution=src.get("resolution") or "hour",
        last=src.get("last"),
        compare_to=src.get("compareTo"),
        dimension=src.get("dimension"),
        top=src.get("top") or 10,
        gauge=src.get("gauge"),
        keys=None if src.get("keys") is None else tuple(src["keys"]),
        event_type=src.get("eventType"),
        limit=src.get("limit") or 20,
        dataset=src.get("dataset"),
        fields=None if src.get("fields") is None else tuple(src["fields"]),
        metrics=tuple(src.get("metrics") or ()),
        severities=None if src.get("severities") is None else tuple(src["severities"]),
        rules=None if src.get("rules") is None else tuple(src["rules"]),
    )


def parse_source(raw: Any, prefix: str = "query") -> Source:
    """A query Pulse answers (SERIES, BREAKDOWN, GAUGE or RECENT_EVENTS), e.g. a dynamic
    dataset's; ``ValidationError`` naming ``<prefix>.<field>``."""
    check = _Check(prefix.rpartition(".")[0] or "")
    found = _source({"kind": TABLE, "source": raw}, (S_SERIES, S_BREAKDOWN, S_GAUGE, S_RECENT), check)
    errors = [FieldError(e.field.lstrip(".").replace("source", prefix, 1), e.message) for e in check.errors]
    if errors or found is None:
        raise ValidationError(errors or [FieldError(prefix, "is required")])
    return found


def is_text(value: object) -> bool:
    """A string that can be stored: UTF-8 encodable (no lone surrogates, which JSON allows)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def widget_from(props: Mapping[str, Any]) -> Widget:
    """A widget as stored (trusted: it was validated when recorded)."""
    lay = props.get("layout") or {}
    src = props.get("source")
    return Widget(
        id=props["id"],
        kind=props["kind"],
        title=props["title"],
        description=props.get("description"),
        layout=Layout(
            lay.get("x", 0), lay.get("y", 0), lay.get("w", 12), lay.get("h", 2), lay.get("section"), lay.get("tab")
        ),
        source=None if src is None else source_from(src),
        chart=props.get("chart"),
        markdown=props.get("markdown"),
        image_url=props.get("imageUrl"),
        alt=props.get("alt"),
        tabs=tuple(props.get("tabs") or ()),
        columns=tuple(Column(c["field"], c["label"], c.get("format", "NUMBER")) for c in props.get("columns") or ()),
        format=props.get("format") or "NUMBER",
    )


class _Check:
    """Collects field errors under a path prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.errors: list[FieldError] = []

    def fail(self, name: str, message: str) -> None:
        self.errors.append(FieldError(f"{self.prefix}.{name}" if name else self.prefix, message))

    def text(self, props: Mapping[str, Any], name: str, required: bool, limit: int = MAX_TITLE) -> str | None:
        value = props.get(name)
        if value is None or (isinstance(value, str) and not value.strip() and required):
            if required:
                self.fail(name, "is required")
            return None
        if not is_text(value):
            self.fail(name, "must be text (valid Unicode)")
            return None
        if len(value) > limit:
            self.fail(name, f"is {len(value)} characters; at most {limit}")
        return value

    def integer(self, props: Mapping[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
        value = props.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, "must be a whole number")
            return default
        if not low <= value <= high:
            self.fail(name, f"must be {low} to {high}, got {value}")
        return value

    def choice(self, props: Mapping[str, Any], name: str, choices: tuple[str, ...], default: str | None) -> str | None:
        value = props.get(name, default)
        if value is None:
            return None
        if value not in choices:
            self.fail(name, f"{str(value)[:40]!r} is not one of {', '.join(choices)}")
            return default
        return value


def _source(props: Mapping[str, Any], allowed: tuple[str, ...], check: _Check) -> Source | None:
    check_kind = props.get("kind")
    if not allowed:
        if props.get("source") is not None:
            check.fail("source", f"a {props.get('kind')} widget shows no data; remove its source")
        return None
    raw = props.get("source")
    if raw is None and check_kind == ALERTS:
        return Source(S_ALERTS)  # every alerting rule: nothing to choose
    if not isinstance(raw, Mapping):
        check.fail("source", f"is required: one of {', '.join(allowed)}")
        return None
    sub = _Check(f"{check.prefix}.source")
    # Resolutions and comparisons are lowercase (as the metrics API's); their GraphQL enum names are accepted too.
    raw = {k: v.lower() if k in ("resolution", "compareTo") and isinstance(v, str) else v for k, v in raw.items()}
    kind = sub.choice(raw, "kind", allowed, None)
    if kind is None:
        if "kind" not in raw:
            sub.fail("kind", f"is required: one of {', '.join(allowed)}")
        check.errors.extend(sub.errors)
        return None
    source = Source(kind=kind)
    if kind in (S_SERIES, S_BREAKDOWN):
        metric = sub.text(raw, "metric", True, 64)
        resolution = sub.choice(raw, "resolution", RESOLUTIONS, "hour" if kind == S_SERIES else "day") or "hour"
        last = sub.integer(raw, "last", None, 1, MAX_LAST)
        compare = sub.choice(raw, "compareTo", COMPARISONS, None) if kind == S_SERIES else None
        dimension = sub.text(raw, "dimension", kind == S_BREAKDOWN, 128) if kind == S_BREAKDOWN else None
        top = sub.integer(raw, "top", 10, 1, MAX_TOP) or 10
        more = raw.get("metrics") or []
        if not isinstance(more, list) or not all(is_text(m) and 0 < len(m) <= 64 for m in more) or len(more) > 5:
            sub.fail("metrics", "must be a list of at most 5 metric names")
            more = []
        elif more and (kind != S_SERIES or check_kind != KPI):
            sub.fail("metrics", "only a KPI shows several metrics")
        source = Source(kind, metric, resolution, last, compare, dimension, top, metrics=tuple(more))
    elif kind == S_GAUGE:
        gauge = sub.text(raw, "gauge", True, 64)
        keys = raw.get("keys")
        if keys is not None and (not isinstance(keys, list) or not all(is_text(k) for k in keys)):
            sub.fail("keys", "must be a list of texts")
            keys = None
        source = Source(kind, gauge=gauge, keys=None if keys is None else tuple(keys))
    elif kind == S_RECENT:
        event_type = raw.get("eventType")
        if event_type is not None and (not isinstance(event_type, str) or not EVENT_TYPE.match(event_type)):
            sub.fail("eventType", f"{str(event_type)[:80]!r} is not an event type ({EVENT_TYPE.pattern})")
        limit = sub.integer(raw, "limit", 20, 1, MAX_RECENT) or 20
        source = Source(kind, event_type=event_type, limit=limit)
    elif kind == S_DATASET:
        dataset = sub.text(raw, "dataset", True, 64)
        fields = raw.get("fields")
        if fields is not None and (not isinstance(fields, list) or not all(is_text(f) and f for f in fields)):
            sub.fail("fields", "must be a list of column names")
            fields = None
        source = Source(kind, dataset=dataset, fields=None if fields is None else tuple(fields))
    elif kind == S_ALERTS:
        severities = raw.get("severities")
        if severities is not None and (
            not isinstance(severities, list) or not all(s in SEVERITIES for s in severities)
        ):
            sub.fail("severities", f"must be a list of {', '.join(SEVERITIES)}")
            severities = None
        names = raw.get("rules")
        if names is not None and (
            not isinstance(names, list) or not all(is_text(n) and 0 < len(n) <= 64 for n in names) or len(names) > 50
        ):
            sub.fail("rules", "must be a list of at most 50 alert rule names")
            names = None
        source = Source(
            kind,
            severities=None if severities is None else tuple(severities),
            rules=None if names is None else tuple(names),
        )
    check.errors.extend(sub.errors)
    return source


def _layout(props: Mapping[str, Any], check: _Check) -> Layout:
    raw = props.get("layout") or {}
    if not isinstance(raw, Mapping):
        check.fail("layout", "must be an object with x, y, w, h (and section, tab)")
        return Layout()
    sub = _Check(f"{check.prefix}.layout")
    x = sub.integer(raw, "x", 0, 0, GRID_COLUMNS - 1) or 0
    w = sub.integer(raw, "w", GRID_COLUMNS, 1, GRID_COLUMNS) or GRID_COLUMNS
    y = sub.integer(raw, "y", 0, 0, MAX_ROWS) or 0
    h = sub.integer(raw, "h", 2, 1, 100) or 2
    if not sub.errors and x + w > GRID_COLUMNS:
        sub.fail("w", f"x + w must be at most {GRID_COLUMNS} (the grid's columns), got {x} + {w}")
    section = sub.text(raw, "section", False, 40)
    tab = sub.text(raw, "tab", False, MAX_TITLE)
    check.errors.extend(sub.errors)
    return Layout(x, y, w, h, section, tab)


def parse_widget(props: Mapping[str, Any], prefix: str = "widget") -> Widget:
    """A widget from a caller's mapping (wire names, e.g. ``imageUrl``), or ``ValidationError``."""
    check = _Check(prefix)
    widget_id = props.get("id")
    if not isinstance(widget_id, str) or not WIDGET_ID.fullmatch(widget_id):
        check.fail("id", "must be 1 to 40 lowercase letters, digits or -, starting with a letter or digit")
    kind = check.choice(props, "kind", KINDS, None)
    if kind is None and "kind" not in props:
        check.fail("kind", f"is required: one of {', '.join(KINDS)}")
    title = check.text(props, "title", True) or ""
    description = check.text(props, "description", False, MAX_TEXT)
    layout = _layout(props, check)
    source = _source(props, SOURCES_OF.get(kind or "", ()), check) if kind else None
    chart = check.choice(props, "chart", CHART_KINDS, "LINE") if kind == CHART else None
    if kind == CHART and source is not None and source.kind == S_SERIES and chart in ("PIE", "DONUT"):
        check.fail("chart", f"a {chart} shows parts of a whole: give it a BREAKDOWN source, not a SERIES")
    markdown = check.text(props, "markdown", kind == TEXT, MAX_TEXT) if kind == TEXT else None
    image_url = check.text(props, "imageUrl", kind == IMAGE, 2048) if kind == IMAGE else None
    alt = check.text(props, "alt", kind == IMAGE, MAX_TITLE) if kind == IMAGE else None
    tabs: tuple[str, ...] = ()
    if kind == SECTION and props.get("tabs") is not None:
        raw_tabs = props["tabs"]
        if not isinstance(raw_tabs, list) or not all(is_text(t) and t.strip() for t in raw_tabs):
            check.fail("tabs", "must be a list of non-empty tab names")
        else:
            tabs = tuple(raw_tabs)
    columns: list[Column] = []
    if kind == TABLE:
        for i, raw in enumerate(props.get("columns") or ()):
            sub = _Check(f"{prefix}.columns[{i}]")
            name = sub.text(raw, "field", True, 128) if isinstance(raw, Mapping) else None
            if not isinstance(raw, Mapping):
                sub.fail("", "must be an object with field, label, format")
            else:
                label = sub.text(raw, "label", False) or name or ""
                fmt = sub.choice(raw, "format", COLUMN_FORMATS, "NUMBER") or "NUMBER"
                if name:
                    columns.append(Column(name, label, fmt))
            check.errors.extend(sub.errors)
    fmt = check.choice(props, "format", COLUMN_FORMATS, "NUMBER") or "NUMBER"
    if check.errors:
        raise ValidationError(check.errors)
    return Widget(
        id=widget_id,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        title=title,
        description=description,
        layout=layout,
        source=source,
        chart=chart,
        markdown=markdown,
        image_url=image_url,
        alt=alt,
        tabs=tabs,
        columns=tuple(columns),
        format=fmt,
    )


def check_sections(widgets: tuple[Widget, ...], prefix: str = "widgets") -> None:
    """Every ``layout.section`` names a SECTION widget (and one of its tabs, if given)."""
    sections = {w.id: w for w in widgets if w.kind == SECTION}
    errors = []
    for i, widget in enumerate(widgets):
        name = widget.layout.section
        if name is None:
            continue
        section = sections.get(name)
        if section is None or section.id == widget.id:
            errors.append(FieldError(f"{prefix}[{i}].layout.section", f"no SECTION widget with id {name!r}"))
        elif widget.layout.tab is not None and widget.layout.tab not in section.tabs:
            tabs = ", ".join(section.tabs) or "none"
            message = f"section {name!r} has no tab {widget.layout.tab!r} (tabs: {tabs})"
            errors.append(FieldError(f"{prefix}[{i}].layout.tab", message))
    if errors:
        raise ValidationError(errors)
