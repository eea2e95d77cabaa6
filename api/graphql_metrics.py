"""GraphQL for metrics: series, breakdown, gauges, metric and gauge definitions, and the
status of projections.

Queries need the ``read`` scope, mutations ``admin``. A bad argument is ONE GraphQL error
with ``extensions.code = "BAD_USER_INPUT"`` and ``extensions.errors`` entries
``{index, field, message}`` naming the argument (``from``, ``last``, ``filter[0].dimension``,
``input.valueProperty``...), as for ``ingestEvents``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Annotated, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry.types import Info

from api.auth import require_scope
from api.context import Pulse
from domain import metrics as defs
from domain.errors import ConcurrencyError, FieldError, NotFound, StoreUnavailable, ValidationError
from domain.events import utc_now
from domain.metrics import MetricCatalog, MetricDefinition
from domain.ports import EventStore, PositionedLog, ViewStore
from projections import series as shaping
from projections.buckets import Bucketing, from_epoch_micros
from projections.counters import PROJECTION
from storage.factory import open_view_store

T = TypeVar("T")
#: Events per second shown for a projection that has not written for this long: 0.
RATE_STALE_SECONDS = 10.0


@strawberry.enum(description="Bucket size: minutes and hours in UTC, days in PULSE_TIMEZONE.")
class Resolution(Enum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"


@strawberry.enum(description="How a metric turns facts into a number; AVG is sum / count.")
class Aggregation(Enum):
    COUNT = "count"
    SUM = "sum"
    MIN = "min"
    MAX = "max"
    AVG = "avg"


@strawberry.enum(description="What a series is compared with, bucket by bucket.")
class Comparison(Enum):
    PREVIOUS_PERIOD = shaping.PREVIOUS_PERIOD
    SAME_PERIOD_LAST_WEEK = shaping.SAME_PERIOD_LAST_WEEK
    SAME_PERIOD_LAST_YEAR = shaping.SAME_PERIOD_LAST_YEAR


@strawberry.input(description="Keep only facts whose dimension has this value (as text).")
class DimensionFilter:
    dimension: str
    value: str


@strawberry.input(description="Count only facts whose property equals this value (as text).")
class PropertyFilterInput:
    property: str
    value: str


@strawberry.type
class PropertyFilter:
    property: str
    value: str


@strawberry.input
class MetricInput:
    name: str = strawberry.field(description="Letters, digits, _ . -; not an event type's name.")
    event_type: str
    aggregation: Aggregation = Aggregation.COUNT
    value_property: str | None = strawberry.field(default=None, description="Numeric property; not for COUNT.")
    dimensions: list[str] = strawberry.field(default_factory=list, description="Up to 3 properties to break down by.")
    filters: list[PropertyFilterInput] = strawberry.field(default_factory=list)


@strawberry.input
class GaugeInput:
    name: str
    event_type: str
    value_property: str = strawberry.field(description="Numeric property whose latest value is kept.")
    key_property: str | None = strawberry.field(
        default=None, description="One reading per value of this property, e.g. product."
    )


@strawberry.type
class Point:
    bucket: datetime = strawberry.field(description="Start of the bucket.")
    value: float | None = strawberry.field(description="Null where undefined: min/max/avg of no facts.")
    count: int = strawberry.field(description="Facts counted in the bucket.")
    partial: bool = strawberry.field(description="The bucket holds now and is still filling.")


@strawberry.type
class Series:
    metric: str
    resolution: Resolution
    points: list[Point]
    watermark: datetime | None = strawberry.field(description="Latest occurredAt the projection has counted.")
    previous: list[Point] | None = strawberry.field(description="With compareTo: the point each one is compared with.")


@strawberry.type
class BreakdownRow:
    key: str
    value: float
    count: int


@strawberry.type
class Metric:
    name: str
    event_type: str
    aggregation: Aggregation
    value_property: str | None
    dimensions: list[str]
    filters: list[PropertyFilter]
    builtin: bool = strawberry.field(description="The count every event type has, named after the type.")
    version: int = strawberry.field(description="Definitions-stream version that last changed it; 0: built-in.")


@strawberry.type
class Gauge:
    name: str
    event_type: str
    value_property: str
    key_property: str | None
    version: int


@strawberry.type
class GaugeReading:
    key: str
    value: float
    occurred_at: datetime
    event_id: str


@strawberry.type
class ProjectionStatus:
    name: str
    partition: str = strawberry.field(description='"" for the SQLite log; a shard id for DynamoDB Streams.')
    checkpoint: str = strawberry.field(description="Last applied position (or sequence number), as text.")
    lag_events: int | None = strawberry.field(
        description="Events of the log past the checkpoint (facts, and definition or key events it has yet to"
        " step over); null where the log has no global order."
    )
    lag_seconds: float | None = strawberry.field(description="Age of the oldest fact not yet projected; 0 if none.")
    events_per_second: float
    watermark: datetime | None
    updated_at: datetime | None
    definitions_version: int


# --- Helpers -----------------------------------------------------------------------------

_views_lock = threading.Lock()
_catalogs: weakref.WeakKeyDictionary[EventStore, MetricCatalog] = weakref.WeakKeyDictionary()
_catalogs_lock = threading.Lock()
_bucketings: dict[str, Bucketing] = {}


def views_of(pulse: Pulse) -> ViewStore:
    """The app's view store, opened on first use."""
    if pulse.views is None:
        with _views_lock:
            if pulse.views is None:
                pulse.views = open_view_store(pulse.settings)
    return pulse.views


def _catalog(store: EventStore) -> MetricCatalog:
    """This process's catalog of the store, caught up (one indexed read) per call."""
    with _catalogs_lock:
        catalog = _catalogs.get(store)
        if catalog is None:
            catalog = _catalogs[store] = MetricCatalog()
        catalog.refresh(store)
        return MetricCatalog(dict(catalog.metrics), dict(catalog.gauges), dict(catalog.deleted), catalog.version)


def _bucketing(timezone: str) -> Bucketing:
    found = _bucketings.get(timezone)
    if found is None:
        try:
            found = _bucketings[timezone] = Bucketing(timezone)
        except ValueError as exc:  # the server's setting, not the caller's input
            raise GraphQLError(f"the server is misconfigured: {exc}", extensions={"code": "MISCONFIGURED"}) from exc
    return found


def _bad_input(exc: ValidationError) -> GraphQLError:
    return GraphQLError(
        str(exc), extensions={"code": "BAD_USER_INPUT", "errors": [error.as_dict() for error in exc.errors]}
    )


def _guarded(action: Callable[[], T]) -> T:
    """Run a resolver body, turning domain errors into GraphQL errors with a code."""
    try:
        return action()
    except ValidationError as exc:
        raise _bad_input(exc) from exc
    except NotFound as exc:
        raise GraphQLError(str(exc), extensions={"code": "NOT_FOUND"}) from exc
    except ConcurrencyError as exc:
        raise GraphQLError(f"{exc}; retry", extensions={"code": "CONFLICT"}) from exc
    except StoreUnavailable as exc:
        raise GraphQLError(
            f"the store is unavailable, retry shortly: {exc}", extensions={"code": "UNAVAILABLE"}
        ) from exc


def _resolve_metric(pulse: Pulse, name: str, field: str = "metric") -> MetricDefinition:
    catalog = _catalog(pulse.store)
    found = catalog.metrics.get(name)
    if found is not None:
        return found
    types = views_of(pulse).event_types()
    found = catalog.metric(name, types)
    if found is None:
        known = sorted({*catalog.metrics, *types})
        hint = f"known: {', '.join(known[:20])}" if known else "no metrics yet: post events or use defineMetric"
        raise ValidationError([FieldError(field, f"unknown metric {name!r} ({hint})")])
    return found


def _metric(definition: MetricDefinition) -> Metric:
    return Metric(
        name=definition.name,
        event_type=definition.event_type,
        aggregation=Aggregation(definition.aggregation),
        value_property=definition.value_property,
        dimensions=list(definition.dimensions),
        filters=[PropertyFilter(property=p, value=v) for p, v in definition.filters],
        builtin=definition.builtin,
        version=definition.revision,
    )


def _gauge(definition: defs.GaugeDefinition) -> Gauge:
    return Gauge(
        name=definition.name,
        event_type=definition.event_type,
        value_property=definition.value_property,
        key_property=definition.key_property,
        version=definition.revision,
    )


def _points(bucketing: Bucketing, resolution: str, points: list[shaping.Point]) -> list[Point]:
    return [
        Point(bucket=bucketing.to_datetime(resolution, p.bucket), value=p.value, count=p.count, partial=p.partial)
        for p in points
    ]


def _watermark(views: ViewStore) -> datetime | None:
    marks = [cp.watermark for cp in views.checkpoints() if cp.projection == PROJECTION and cp.watermark is not None]
    return from_epoch_micros(max(marks)) if marks else None


def series_of(
    pulse: Pulse,
    metric: str,
    resolution: Resolution,
    from_: datetime | None = None,
    to: datetime | None = None,
    last: int | None = None,
    filter: list[DimensionFilter] | None = None,
    compare_to: Comparison | None = None,
    now: float | None = None,
) -> Series:
    """What the ``series`` query answers (and ``seriesUpdated`` pushes) at ``now``;
    raises domain errors (see ``_guarded``)."""
    views = views_of(pulse)
    definition = _resolve_metric(pulse, metric)
    where = shaping.where_of(definition, [(f.dimension, f.value) for f in filter or ()])
    bucketing = _bucketing(pulse.settings.timezone)
    now = pulse.clock.now() if now is None else now
    buckets = shaping.plan_buckets(bucketing, resolution.value, now, from_, to, last)
    points, previous = shaping.read_series(
        views,
        bucketing,
        definition,
        resolution.value,
        buckets,
        where,
        now,
        compare_to.value if compare_to else None,
    )
    return Series(
        metric=definition.name,
        resolution=resolution,
        points=_points(bucketing, resolution.value, points),
        watermark=_watermark(views),
        previous=None if previous is None else _points(bucketing, resolution.value, previous),
    )


def gauge_readings_of(pulse: Pulse, name: str, keys: list[str] | None = None) -> list[GaugeReading]:
    """What the ``gauges`` query answers (and ``gaugeUpdated`` pushes)."""
    if name not in _catalog(pulse.store).gauges:
        raise ValidationError([FieldError("name", f"unknown gauge {name!r}; defineGauge creates one")])
    return [
        GaugeReading(key=r.key, value=r.value, occurred_at=from_epoch_micros(r.occurred_at), event_id=r.event_id)
        for r in views_of(pulse).read_gauges(name, keys)
    ]


def _status(pulse: Pulse, views: ViewStore) -> list[ProjectionStatus]:
    checkpoints = views.checkpoints() or [views.checkpoint(PROJECTION)]
    now = utc_now()
    statuses = []
    for cp in checkpoints:
        lag_events: int | None = None
        lag_seconds: float | None = None
        if cp.partition == "" and isinstance(pulse.store, PositionedLog):
            lag_events = max(pulse.store.last_position() - cp.position, 0)
            lag_seconds = 0.0
            if lag_events:
                oldest = pulse.store.read_facts(str(cp.position) if cp.position else None, limit=1).events
                if oldest:
                    lag_seconds = max((now - oldest[0].received_at).total_seconds(), 0.0)
        updated = from_epoch_micros(cp.updated_at) if cp.updated_at is not None else None
        fresh = updated is not None and (now - updated).total_seconds() < RATE_STALE_SECONDS
        statuses.append(
            ProjectionStatus(
                name=cp.projection,
                partition=cp.partition,
                checkpoint=str(cp.position),
                lag_events=lag_events,
                lag_seconds=lag_seconds,
                events_per_second=cp.events_per_second if fresh else 0.0,
                watermark=from_epoch_micros(cp.watermark) if cp.watermark is not None else None,
                updated_at=updated,
                definitions_version=cp.definitions_version,
            )
        )
    return statuses


# --- Root types --------------------------------------------------------------------------


@strawberry.type
class MetricsQuery:
    @strawberry.field(description="A metric over time: one point per bucket, zero-filled. Needs the read scope.")
    def series(
        self,
        info: Info,
        metric: str,
        resolution: Resolution,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
        last: Annotated[
            int | None, strawberry.argument(description="The last N buckets up to now (or up to `to`); at most 10,000.")
        ] = None,
        filter: list[DimensionFilter] | None = None,
        compare_to: Comparison | None = None,
    ) -> Series:
        require_scope(info, "read")
        pulse: Pulse = info.context["pulse"]
        return _guarded(lambda: series_of(pulse, metric, resolution, from_, to, last, filter, compare_to))

    @strawberry.field(description="A metric per value of one dimension over a range, largest first.")
    def breakdown(
        self,
        info: Info,
        metric: str,
        dimension: str,
        resolution: Annotated[
            Resolution | None,
            strawberry.argument(description="Bucket size the range is aligned to; default DAY (with last 1: today)."),
        ] = None,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
        last: int | None = None,
        top: int | None = 10,
    ) -> list[BreakdownRow]:
        require_scope(info, "read")
        pulse: Pulse = info.context["pulse"]

        def run() -> list[BreakdownRow]:
            views = views_of(pulse)
            definition = _resolve_metric(pulse, metric)
            chosen = (resolution or Resolution.DAY).value
            bucketing = _bucketing(pulse.settings.timezone)
            span = last if last is not None or from_ is not None else 1
            buckets = shaping.plan_buckets(bucketing, chosen, pulse.clock.now(), from_, to, span)
            rows = shaping.read_breakdown(
                views,
                definition,
                dimension,
                chosen,
                buckets[0],
                bucketing.end(chosen, buckets[-1]),
                10 if top is None else top,
            )
            return [BreakdownRow(key=row.key, value=row.value, count=row.count) for row in rows]

        return _guarded(run)

    @strawberry.field(description="Latest value per key of a gauge (all keys, or the ones given).")
    def gauges(self, info: Info, name: str, keys: list[str] | None = None) -> list[GaugeReading]:
        require_scope(info, "read")
        pulse: Pulse = info.context["pulse"]
        return _guarded(lambda: gauge_readings_of(pulse, name, keys))

    @strawberry.field(description="Defined metrics, then the built-in count of every event type seen.")
    def metrics(self, info: Info) -> list[Metric]:
        require_scope(info, "read")
        pulse: Pulse = info.context["pulse"]

        def run() -> list[Metric]:
            catalog = _catalog(pulse.store)
            defined = [_metric(m) for _, m in sorted(catalog.metrics.items())]
            builtin = [
                _metric(MetricDefinition.builtin_count(t))
                for t in sorted(views_of(pulse).event_types())
                if t not in catalog.metrics
            ]
            return defined + builtin

        return _guarded(run)

    @strawberry.field(description="Defined gauges.")
    def gauge_definitions(self, info: Info) -> list[Gauge]:
        require_scope(info, "read")
        pulse: Pulse = info.context["pulse"]
        return _guarded(lambda: [_gauge(g) for _, g in sorted(_catalog(pulse.store).gauges.items())])

    @strawberry.field(description="Projection workers: checkpoint, lag, throughput.")
    def projections(self, info: Info) -> list[ProjectionStatus]:
        require_scope(info, "read")
        pulse: Pulse = info.context["pulse"]
        return _guarded(lambda: _status(pulse, views_of(pulse)))


def _definition(input: MetricInput) -> MetricDefinition:
    return defs.validate_metric(
        input.name,
        input.event_type,
        input.aggregation.value,
        input.value_property,
        input.dimensions,
        [(f.property, f.value) for f in input.filters],
    )


@strawberry.type
class MetricsMutation:
    @strawberry.mutation(description="Define a metric; facts already stored are counted too. Needs admin.")
    def define_metric(self, info: Info, input: MetricInput) -> Metric:
        require_scope(info, "admin")
        pulse: Pulse = info.context["pulse"]

        def run() -> Metric:
            definition = _definition(input)
            reserved = views_of(pulse).event_types()
            return _metric(defs.define_metric(pulse.store, definition, reserved=reserved))

        return _guarded(run)

    @strawberry.mutation(description="Change a metric; its counters are recomputed from the facts. Needs admin.")
    def update_metric(self, info: Info, input: MetricInput) -> Metric:
        require_scope(info, "admin")
        pulse: Pulse = info.context["pulse"]
        return _guarded(lambda: _metric(defs.update_metric(pulse.store, _definition(input))))

    @strawberry.mutation(description="Delete a metric and its counters; returns what it was. Needs admin.")
    def delete_metric(self, info: Info, name: str) -> Metric:
        require_scope(info, "admin")
        pulse: Pulse = info.context["pulse"]
        return _guarded(lambda: _metric(defs.delete_metric(pulse.store, name)))

    @strawberry.mutation(description="Define a gauge: the latest value of a property per key. Needs admin.")
    def define_gauge(self, info: Info, input: GaugeInput) -> Gauge:
        require_scope(info, "admin")
        pulse: Pulse = info.context["pulse"]

        def run() -> Gauge:
            definition = defs.validate_gauge(input.name, input.event_type, input.value_property, input.key_property)
            return _gauge(defs.define_gauge(pulse.store, definition))

        return _guarded(run)

    @strawberry.mutation(description="Delete a gauge and its readings; returns what it was. Needs admin.")
    def delete_gauge(self, info: Info, name: str) -> Gauge:
        require_scope(info, "admin")
        pulse: Pulse = info.context["pulse"]
        return _guarded(lambda: _gauge(defs.delete_gauge(pulse.store, name)))


__all__ = ["MetricsMutation", "MetricsQuery", "views_of"]
