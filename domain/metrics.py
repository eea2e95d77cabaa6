"""Metric and gauge definitions: an event-sourced aggregate, the stream ``metric-definitions``.

A **metric** counts facts of one event type into counters: ``count``, ``sum``, ``min``,
``max`` of a numeric value property, or ``avg`` (derived from sum and count when read),
broken down by up to three dimension properties and narrowed by equality filters on
properties. Every event type also has a **built-in** count metric named after the type
(``sale``); it is not stored in the stream. A **gauge** keeps the latest numeric value
of a property per key property (stock level per product), last-writer-wins by
``(occurredAt, id)``.

Metrics and gauges share one namespace of names. Events of the stream: ``metric_defined``,
``metric_updated``, ``metric_deleted``, ``gauge_defined``, ``gauge_deleted``; the catalog is
their fold. Each definition remembers the stream version that last changed it
(``revision``), so a projection worker that knows the version its read models reflect
can tell exactly which metrics and gauges to rebuild (``MetricCatalog.changed_since``).

Values are compared as text: a dimension value or filter value is the property's value
rendered by ``dimension_value`` (strings as they are, ``true``/``false``, numbers as JSON
writes them); a missing or null property counts under ``MISSING`` = ``"(none)"``.

Commands read the catalog, validate against it and append at the version they read,
retrying when another writer got there first. This module does no I/O of its own: the
event store is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from domain.aggregate import decide_and_append
from domain.errors import FieldError, NotFound, ValidationError
from domain.events import EVENT_TYPE, Event, RecordedEvent, utc_now
from domain.ports import EventStore

DEFINITIONS_STREAM = "metric-definitions"

METRIC_DEFINED = "metric_defined"
METRIC_UPDATED = "metric_updated"
METRIC_DELETED = "metric_deleted"
GAUGE_DEFINED = "gauge_defined"
GAUGE_DELETED = "gauge_deleted"

COUNT, SUM, MIN, MAX, AVG = "count", "sum", "min", "max", "avg"
AGGREGATIONS = (COUNT, SUM, MIN, MAX, AVG)

MINUTE, HOUR, DAY = "minute", "hour", "day"
#: Finest first.
RESOLUTIONS = (MINUTE, HOUR, DAY)
#: Not a time resolution: the one counter cell (bucket 0, no dimensions) per metric of a
#: value whose count is the facts whose value property was present but not a number (text,
#: a boolean, an object...). Kept beside the metric's cells, it is written exactly once with
#: them, recomputed by every rebuild and replay, and never pruned.
SKIPPED = "skipped"

MAX_DECIMALS = 12
MAX_DIMENSIONS = 3
MAX_FILTERS = 10
MAX_PROPERTY_NAME = 128
MAX_FILTER_VALUE = 1024
#: The dimension value (and gauge key) of a fact that lacks the property or has it null.
MISSING = "(none)"
#: Counter key prefix of built-in count metrics; user names cannot contain ":".
BUILTIN_PREFIX = "type:"

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def dimension_value(value: Any) -> str:
    """A property value as a dimension value, filter operand or gauge key."""
    if value is None:
        return MISSING
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    return repr(value) if isinstance(value, float) else str(value)


def builtin_key(event_type: str) -> str:
    """The counter key of an event type's built-in count metric."""
    return BUILTIN_PREFIX + event_type


@dataclass(frozen=True, slots=True)
class MetricDefinition:
    name: str
    event_type: str
    aggregation: str = COUNT
    value_property: str | None = None
    dimensions: tuple[str, ...] = ()
    #: Equality filters ``(property, value as text)``; a fact must match all of them.
    filters: tuple[tuple[str, str], ...] = ()
    #: The definitions-stream version that last changed this metric; 0 for built-ins.
    revision: int = 0
    builtin: bool = False
    #: Decimal places values are rounded to when read (money: 2); None: to 15 significant
    #: digits, which hides the binary noise of float sums (1883.8000000000002 reads 1883.8).
    decimals: int | None = None
    #: Count a value property holding a plain decimal string ("12.50") as that number;
    #: off: such a fact is left out of the value's cells and counted as skipped.
    parse_numeric_strings: bool = False

    @property
    def key(self) -> str:
        """What its counters are stored under."""
        return builtin_key(self.event_type) if self.builtin else self.name

    @classmethod
    def builtin_count(cls, event_type: str) -> MetricDefinition:
        return cls(name=event_type, event_type=event_type, builtin=True)

    def as_properties(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "eventType": self.event_type,
            "aggregation": self.aggregation,
            "valueProperty": self.value_property,
            "dimensions": list(self.dimensions),
            "filters": [{"property": p, "value": v} for p, v in self.filters],
            **({"decimals": self.decimals} if self.decimals is not None else {}),
            **({"parseNumericStrings": True} if self.parse_numeric_strings else {}),
        }


@dataclass(frozen=True, slots=True)
class GaugeDefinition:
    name: str
    event_type: str
    value_property: str
    #: One reading per value of this property; None keeps a single reading under ``MISSING``.
    key_property: str | None = None
    revision: int = 0

    def as_properties(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "eventType": self.event_type,
            "valueProperty": self.value_property,
            "keyProperty": self.key_property,
        }


def _metric_from(props: Mapping[str, Any], revision: int) -> MetricDefinition:
    return MetricDefinition(
        name=props["name"],
        event_type=props["eventType"],
        aggregation=props["aggregation"],
        value_property=props.get("valueProperty"),
        dimensions=tuple(props.get("dimensions") or ()),
        filters=tuple((f["property"], f["value"]) for f in props.get("filters") or ()),
        revision=revision,
        decimals=props.get("decimals"),
        parse_numeric_strings=bool(props.get("parseNumericStrings", False)),
    )


def _gauge_from(props: Mapping[str, Any], revision: int) -> GaugeDefinition:
    return GaugeDefinition(
        name=props["name"],
        event_type=props["eventType"],
        value_property=props["valueProperty"],
        key_property=props.get("keyProperty"),
        revision=revision,
    )


@dataclass
class MetricCatalog:
    """The fold of the definitions stream; ``version`` is the last event applied."""

    metrics: dict[str, MetricDefinition] = field(default_factory=dict)
    gauges: dict[str, GaugeDefinition] = field(default_factory=dict)
    #: Names deleted, with the version that deleted them (a later define clears it).
    deleted: dict[str, int] = field(default_factory=dict)
    version: int = 0

    def apply(self, events: Iterable[RecordedEvent]) -> None:
        for recorded in events:
            version = recorded.version or self.version + 1
            props = recorded.properties
            name = props["name"]
            if recorded.type in (METRIC_DEFINED, METRIC_UPDATED):
                self.metrics[name] = _metric_from(props, version)
                self.deleted.pop(name, None)
            elif recorded.type == GAUGE_DEFINED:
                self.gauges[name] = _gauge_from(props, version)
                self.deleted.pop(name, None)
            elif recorded.type == METRIC_DELETED:
                self.metrics.pop(name, None)
                self.deleted[name] = version
            elif recorded.type == GAUGE_DELETED:
                self.gauges.pop(name, None)
                self.deleted[name] = version
            self.version = version

    def refresh(self, store: EventStore) -> bool:
        """Catch up with the stream; True when anything changed."""
        events = store.read_stream(DEFINITIONS_STREAM, after_version=self.version)
        self.apply(events)
        return bool(events)

    def changed_since(self, version: int) -> tuple[list[str], list[str]]:
        """Names of the metrics and of the gauges whose read models must be rebuilt to
        go from ``version`` to this catalog's version: defined, updated or deleted since."""
        metrics = {name for name, m in self.metrics.items() if m.revision > version}
        gauges = {name for name, g in self.gauges.items() if g.revision > version}
        for name, deleted_at in self.deleted.items():
            if deleted_at > version:
                # A deleted name may have been a metric or a gauge: clear both kinds.
                metrics.add(name)
                gauges.add(name)
        return sorted(metrics), sorted(gauges)

    def metric(self, name: str, event_types: Collection[str] = ()) -> MetricDefinition | None:
        """A defined metric by name, else the built-in count of a known event type."""
        found = self.metrics.get(name)
        if found is None and name in event_types:
            return MetricDefinition.builtin_count(name)
        return found


def load_catalog(store: EventStore) -> MetricCatalog:
    catalog = MetricCatalog()
    catalog.refresh(store)
    return catalog


# --- Validation --------------------------------------------------------------------------


def _check_property(errors: list[FieldError], path: str, value: Any, required: bool) -> None:
    if value is None:
        if required:
            errors.append(FieldError(path, "is required"))
        return
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_PROPERTY_NAME:
        errors.append(FieldError(path, f"must be a property name of 1 to {MAX_PROPERTY_NAME} characters"))


def _check_name(errors: list[FieldError], path: str, name: Any) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        errors.append(
            FieldError(
                path,
                f"{name!r} is not a valid name: a letter, then up to 63 letters, digits, '_', '.' or '-'",
            )
        )


def _check_event_type(errors: list[FieldError], path: str, event_type: Any) -> None:
    if not isinstance(event_type, str) or not EVENT_TYPE.fullmatch(event_type):
        errors.append(
            FieldError(
                path,
                f"{event_type!r} is not an event type: a lowercase letter, then up to 63 lowercase"
                " letters, digits, '_', '.' or '-'",
            )
        )


def validate_metric(
    name: Any,
    event_type: Any,
    aggregation: Any,
    value_property: Any = None,
    dimensions: Sequence[Any] = (),
    filters: Sequence[tuple[Any, Any]] = (),
    prefix: str = "input",
    decimals: Any = None,
    parse_numeric_strings: Any = False,
) -> MetricDefinition:
    """A definition from wire values, or ``ValidationError`` naming each bad field."""
    errors: list[FieldError] = []
    _check_name(errors, f"{prefix}.name", name)
    _check_event_type(errors, f"{prefix}.eventType", event_type)
    if aggregation not in AGGREGATIONS:
        errors.append(FieldError(f"{prefix}.aggregation", f"must be one of {', '.join(AGGREGATIONS)}"))
    elif aggregation == COUNT:
        if value_property is not None:
            errors.append(
                FieldError(f"{prefix}.valueProperty", "a count metric counts facts and takes no value property")
            )
    else:
        _check_property(errors, f"{prefix}.valueProperty", value_property, required=True)
    dims = list(dimensions)
    if len(dims) > MAX_DIMENSIONS:
        errors.append(FieldError(f"{prefix}.dimensions", f"has {len(dims)}; at most {MAX_DIMENSIONS} are allowed"))
    for i, dim in enumerate(dims):
        _check_property(errors, f"{prefix}.dimensions[{i}]", dim, required=True)
    if len(set(dims)) != len(dims):
        errors.append(FieldError(f"{prefix}.dimensions", "must not repeat a property"))
    pairs = list(filters)
    if len(pairs) > MAX_FILTERS:
        errors.append(FieldError(f"{prefix}.filters", f"has {len(pairs)}; at most {MAX_FILTERS} are allowed"))
    for i, (prop, value) in enumerate(pairs):
        _check_property(errors, f"{prefix}.filters[{i}].property", prop, required=True)
        if not isinstance(value, str) or len(value) > MAX_FILTER_VALUE:
            errors.append(
                FieldError(f"{prefix}.filters[{i}].value", f"must be text of at most {MAX_FILTER_VALUE} characters")
            )
    if len({p for p, _ in pairs}) != len(pairs):
        errors.append(FieldError(f"{prefix}.filters", "must not repeat a property (filters are ANDed equalities)"))
    if decimals is not None:
        if aggregation == COUNT:
            errors.append(FieldError(f"{prefix}.decimals", "a count is a whole number and takes no decimals"))
        elif type(decimals) is not int or not 0 <= decimals <= MAX_DECIMALS:
            errors.append(FieldError(f"{prefix}.decimals", f"must be a whole number from 0 to {MAX_DECIMALS}"))
    if type(parse_numeric_strings) is not bool:
        errors.append(FieldError(f"{prefix}.parseNumericStrings", "must be true or false"))
    elif parse_numeric_strings and aggregation == COUNT:
        errors.append(FieldError(f"{prefix}.parseNumericStrings", "a count metric takes no value to parse"))
    if errors:
        raise ValidationError(errors)
    return MetricDefinition(
        name=name,
        event_type=event_type,
        aggregation=aggregation,
        value_property=value_property,
        dimensions=tuple(dims),
        filters=tuple((p, v) for p, v in pairs),
        decimals=decimals,
        parse_numeric_strings=parse_numeric_strings,
    )


def validate_gauge(
    name: Any, event_type: Any, value_property: Any, key_property: Any = None, prefix: str = "input"
) -> GaugeDefinition:
    errors: list[FieldError] = []
    _check_name(errors, f"{prefix}.name", name)
    _check_event_type(errors, f"{prefix}.eventType", event_type)
    _check_property(errors, f"{prefix}.valueProperty", value_property, required=True)
    _check_property(errors, f"{prefix}.keyProperty", key_property, required=False)
    if errors:
        raise ValidationError(errors)
    return GaugeDefinition(name=name, event_type=event_type, value_property=value_property, key_property=key_property)


# --- Commands ----------------------------------------------------------------------------


def _taken(catalog: MetricCatalog, name: str, reserved: Collection[str]) -> str | None:
    if name in catalog.metrics:
        return f"a metric named {name!r} already exists; use updateMetric to change it"
    if name in catalog.gauges:
        return f"a gauge named {name!r} already exists; metrics and gauges share names"
    if name in reserved:
        return f"{name!r} is the built-in count of the event type {name!r}; choose another name"
    return None


def _event(kind: str, props: dict[str, Any]) -> Event:
    return Event(type=kind, occurred_at=utc_now(), properties=props)


D = TypeVar("D", MetricDefinition, GaugeDefinition)


def _record(store: EventStore, decide: Callable[[MetricCatalog], tuple[Sequence[Event], Callable[[int], D]]]) -> D:
    """Append what ``decide`` makes of the catalog to the definitions stream."""
    return decide_and_append(store, DEFINITIONS_STREAM, load_catalog, decide)


def _define(
    store: EventStore,
    kind: str,
    definition: D,
    build: Callable[[Mapping[str, Any], int], D],
    check: Callable[[MetricCatalog], None],
) -> D:
    """Record ``definition`` as a ``kind`` event once ``check`` accepts the catalog."""

    def decide(catalog: MetricCatalog):
        check(catalog)
        return [_event(kind, definition.as_properties())], lambda v: build(definition.as_properties(), v)

    return _record(store, decide)


def _untaken(name: str, reserved: Collection[str]) -> Callable[[MetricCatalog], None]:
    """The check that ``name`` is free for a new metric or gauge."""

    def check(catalog: MetricCatalog) -> None:
        problem = _taken(catalog, name, reserved)
        if problem:
            raise ValidationError([FieldError("input.name", problem)])

    return check


def _delete(
    store: EventStore, kind: str, name: str, defined: Callable[[MetricCatalog], Mapping[str, D]], what: str
) -> D:
    """Record the deletion of the ``what`` called ``name``; returns its definition."""

    def decide(catalog: MetricCatalog):
        found = defined(catalog).get(name)
        if found is None:
            raise NotFound(f"no {what} named {name!r}")
        return [_event(kind, {"name": name})], lambda v: found

    return _record(store, decide)


def define_metric(store: EventStore, metric: MetricDefinition, reserved: Collection[str] = ()) -> MetricDefinition:
    """Record a new metric (validated by ``validate_metric``). ``reserved``: names of
    event types seen so far, whose built-in metrics a new metric must not hide."""
    return _define(store, METRIC_DEFINED, metric, _metric_from, _untaken(metric.name, reserved))


def update_metric(store: EventStore, metric: MetricDefinition) -> MetricDefinition:
    """Replace an existing metric's definition; its counters are rebuilt from the facts."""

    def check(catalog: MetricCatalog) -> None:
        if metric.name not in catalog.metrics:
            raise NotFound(f"no metric named {metric.name!r}; defineMetric creates one")

    return _define(store, METRIC_UPDATED, metric, _metric_from, check)


def delete_metric(store: EventStore, name: str) -> MetricDefinition:
    """Delete a metric; its counters go with it. Returns the deleted definition."""
    return _delete(store, METRIC_DELETED, name, lambda catalog: catalog.metrics, "metric")


def define_gauge(store: EventStore, gauge: GaugeDefinition) -> GaugeDefinition:
    """Record a new gauge (validated by ``validate_gauge``)."""
    return _define(store, GAUGE_DEFINED, gauge, _gauge_from, _untaken(gauge.name, ()))


def delete_gauge(store: EventStore, name: str) -> GaugeDefinition:
    return _delete(store, GAUGE_DELETED, name, lambda catalog: catalog.gauges, "gauge")
