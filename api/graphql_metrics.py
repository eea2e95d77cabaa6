"""GraphQL for metrics: series, breakdown, gauges, metric and gauge definitions, and the
status of projections.

Resolvers translate arguments, call ``pulse.metrics`` (``services/metrics.py``, which
checks the caller's scope: queries need ``read``, mutations ``admin``) and shape the
answer. A bad argument is ONE GraphQL error
with ``extensions.code = "BAD_USER_INPUT"`` and ``extensions.errors`` entries
``{index, field, message}`` naming the argument (``from``, ``last``, ``filter[0].dimension``,
``input.valueProperty``...), as for ``ingestEvents``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Annotated, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry.types import Info

from api.auth import caller
from api.context import Pulse
from api.graphql_replay import ProjectionState, replay_fields
from domain import metrics as defs
from domain.access import Forbidden, Principal
from domain.errors import ConcurrencyError, NotFound, StoreUnavailable, ValidationError
from domain.metrics import MetricDefinition
from domain.micros import from_epoch_micros
from projections import series as shaping
from projections.buckets import Bucketing

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
    decimals: int | None = strawberry.field(
        default=None,
        description="Decimal places SUM/AVG/MIN/MAX values are rounded to (money: 2). Unset: 15 significant"
        " digits, so float noise such as 1883.8000000000002 reads 1883.8.",
    )
    parse_numeric_strings: bool = strawberry.field(
        default=False,
        description='Count a value property sent as a plain decimal string ("12.50", "-3": digits, an optional'
        " minus and fraction; no exponent, spaces, NaN or inf) as that number. Off: such facts are skipped"
        " (see Metric.skippedValues). Changing it recomputes the metric.",
    )


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
    decimals: int | None = strawberry.field(
        default=None, description="Decimal places values are rounded to; null: 15 significant digits."
    )
    parse_numeric_strings: bool = strawberry.field(
        default=False, description='Plain decimal strings ("12.50") in the value property count as numbers.'
    )

    @strawberry.field(
        description="Facts left out of this metric's values because their value property was present but not a"
        ' number (text such as "12.50" unless parseNumericStrings, a boolean, an object); 0 for counts.'
        " Recomputed when the metric is."
    )
    def skipped_values(self, info: Info) -> int:
        if self.builtin or self.aggregation == Aggregation.COUNT:
            return 0
        pulse, principal = caller(info)
        return guarded(lambda: pulse.metrics.skipped_values(principal, [self.name])).get(self.name, 0)


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
    state: ProjectionState = strawberry.field(
        default=ProjectionState.LIVE, description="LIVE, or REQUESTED/REPLAYING/FAILED for a replay."
    )
    progress: float | None = strawberry.field(default=None, description="A running replay's share done, 0..1.")
    replay_done: int | None = strawberry.field(default=None, description="Events the replay has read.")
    replay_total: int | None = strawberry.field(default=None, description="Events the replay has to read.")
    eta_seconds: float | None = strawberry.field(default=None, description="Seconds the replay still needs.")
    eta: datetime | None = strawberry.field(default=None, description="When the replay should switch.")
    replay_error: str | None = strawberry.field(default=None, description="Why the last replay failed.")
    parked: int = strawberry.field(default=0, description="Events this projection parked (see parkedEvents).")


# --- Helpers -----------------------------------------------------------------------------


def bad_input(exc: ValidationError) -> GraphQLError:
    return GraphQLError(
        str(exc), extensions={"code": "BAD_USER_INPUT", "errors": [error.as_dict() for error in exc.errors]}
    )


def guarded(action: Callable[[], T]) -> T:
    """Run a service call, turning domain errors into GraphQL errors with a code."""
    try:
        return action()
    except ValidationError as exc:
        raise bad_input(exc) from exc
    except Forbidden as exc:
        raise GraphQLError(str(exc), extensions={"code": "FORBIDDEN"}) from exc
    except NotFound as exc:
        raise GraphQLError(str(exc), extensions={"code": "NOT_FOUND"}) from exc
    except ConcurrencyError as exc:
        raise GraphQLError(f"{exc}; retry", extensions={"code": "CONFLICT"}) from exc
    except StoreUnavailable as exc:
        raise GraphQLError(
            f"the store is unavailable, retry shortly: {exc}", extensions={"code": "UNAVAILABLE"}
        ) from exc


def bucketing_of(pulse: Pulse) -> Bucketing:
    try:
        return pulse.bucketing
    except ValueError as exc:  # the server's setting, not the caller's input
        raise GraphQLError(f"the server is misconfigured: {exc}", extensions={"code": "MISCONFIGURED"}) from exc


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
        decimals=definition.decimals,
        parse_numeric_strings=definition.parse_numeric_strings,
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


def series_of(
    pulse: Pulse,
    principal: Principal,
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
    raises domain errors (see ``guarded``)."""
    bucketing = bucketing_of(pulse)
    answer = pulse.metrics.series(
        principal,
        metric,
        resolution.value,
        shaping.Span(from_, to, last),
        [(f.dimension, f.value) for f in filter or ()],
        compare_to.value if compare_to else None,
        now,
    )
    return Series(
        metric=answer.metric.name,
        resolution=resolution,
        points=_points(bucketing, resolution.value, answer.points),
        watermark=None if answer.watermark is None else from_epoch_micros(answer.watermark),
        previous=None if answer.previous is None else _points(bucketing, resolution.value, answer.previous),
    )


def gauge_readings_of(
    pulse: Pulse, principal: Principal, name: str, keys: list[str] | None = None
) -> list[GaugeReading]:
    """What the ``gauges`` query answers (and ``gaugeUpdated`` pushes)."""
    return [
        GaugeReading(key=r.key, value=r.value, occurred_at=from_epoch_micros(r.occurred_at), event_id=r.event_id)
        for r in pulse.metrics.gauges(principal, name, keys)
    ]


def projections_of(pulse: Pulse, principal: Principal) -> list[ProjectionStatus]:
    """What the ``projections`` query answers (and ``projectionStatus`` pushes)."""

    def moment(micros: int | None) -> datetime | None:
        return None if micros is None else from_epoch_micros(micros)

    now = pulse.clock.now()
    parked = pulse.parked.counts()
    return [
        ProjectionStatus(
            **replay_fields(state.replay, now),  # type: ignore[arg-type]
            name=state.checkpoint.projection,
            partition=state.checkpoint.partition,
            checkpoint=str(state.checkpoint.position),
            lag_events=state.lag_events,
            lag_seconds=state.lag_seconds,
            events_per_second=state.events_per_second,
            watermark=moment(state.checkpoint.watermark),
            updated_at=moment(state.checkpoint.updated_at),
            definitions_version=state.checkpoint.definitions_version,
            parked=parked.get(state.checkpoint.projection, 0),
        )
        for state in pulse.metrics.projections(principal)
    ]


def _definition(input: MetricInput) -> MetricDefinition:
    return defs.validate_metric(
        input.name,
        input.event_type,
        input.aggregation.value,
        input.value_property,
        input.dimensions,
        [(f.property, f.value) for f in input.filters],
        decimals=input.decimals,
        parse_numeric_strings=input.parse_numeric_strings,
    )


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
        pulse, principal = caller(info)
        return guarded(lambda: series_of(pulse, principal, metric, resolution, from_, to, last, filter, compare_to))

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
        pulse, principal = caller(info)
        chosen = None if resolution is None else resolution.value
        span = shaping.Span(from_, to, last)
        rows = guarded(lambda: pulse.metrics.breakdown(principal, metric, dimension, chosen, span, top))
        return [BreakdownRow(key=row.key, value=row.value, count=row.count) for row in rows]

    @strawberry.field(description="Latest value per key of a gauge (all keys, or the ones given).")
    def gauges(self, info: Info, name: str, keys: list[str] | None = None) -> list[GaugeReading]:
        pulse, principal = caller(info)
        return guarded(lambda: gauge_readings_of(pulse, principal, name, keys))

    @strawberry.field(description="Defined metrics, then the built-in count of every event type seen.")
    def metrics(self, info: Info) -> list[Metric]:
        pulse, principal = caller(info)
        return [_metric(m) for m in guarded(lambda: pulse.metrics.metrics(principal))]

    @strawberry.field(description="Defined gauges.")
    def gauge_definitions(self, info: Info) -> list[Gauge]:
        pulse, principal = caller(info)
        return [_gauge(g) for g in guarded(lambda: pulse.metrics.gauge_definitions(principal))]

    @strawberry.field(description="Projection workers: checkpoint, lag, throughput.")
    def projections(self, info: Info) -> list[ProjectionStatus]:
        pulse, principal = caller(info)
        return guarded(lambda: projections_of(pulse, principal))


@strawberry.type
class MetricsMutation:
    @strawberry.mutation(description="Define a metric; facts already stored are counted too. Needs admin.")
    def define_metric(self, info: Info, input: MetricInput) -> Metric:
        pulse, principal = caller(info)
        return _metric(guarded(lambda: pulse.metrics.define_metric(principal, _definition(input))))

    @strawberry.mutation(description="Change a metric; its counters are recomputed from the facts. Needs admin.")
    def update_metric(self, info: Info, input: MetricInput) -> Metric:
        pulse, principal = caller(info)
        return _metric(guarded(lambda: pulse.metrics.update_metric(principal, _definition(input))))

    @strawberry.mutation(description="Delete a metric and its counters; returns what it was. Needs admin.")
    def delete_metric(self, info: Info, name: str) -> Metric:
        pulse, principal = caller(info)
        return _metric(guarded(lambda: pulse.metrics.delete_metric(principal, name)))

    @strawberry.mutation(description="Define a gauge: the latest value of a property per key. Needs admin.")
    def define_gauge(self, info: Info, input: GaugeInput) -> Gauge:
        pulse, principal = caller(info)

        def run() -> defs.GaugeDefinition:
            definition = defs.validate_gauge(input.name, input.event_type, input.value_property, input.key_property)
            return pulse.metrics.define_gauge(principal, definition)

        return _gauge(guarded(run))

    @strawberry.mutation(description="Delete a gauge and its readings; returns what it was. Needs admin.")
    def delete_gauge(self, info: Info, name: str) -> Gauge:
        pulse, principal = caller(info)
        return _gauge(guarded(lambda: pulse.metrics.delete_gauge(principal, name)))


__all__ = [
    "MetricsMutation",
    "MetricsQuery",
    "bucketing_of",
    "gauge_readings_of",
    "guarded",
    "projections_of",
    "series_of",
]
