"""Metrics as every entry point serves them: series, breakdowns, gauges, definitions and
the status of the projections, with the caller's scope checked here.

Queries need the ``read`` scope, definition changes ``admin``. Answers are plain values
(``projections.series`` points, ``domain.ports`` readings, definitions); a bad argument
raises ``ValidationError`` naming it, an unknown name ``NotFound``, a missing scope
``Forbidden``. GraphQL, REST and the CLI only translate arguments and shape answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from domain import metrics as defs
from domain.access import Principal, require
from domain.clock import Clock
from domain.errors import FieldError, ValidationError
from domain.metrics import COUNT, SKIPPED, GaugeDefinition, MetricCatalog, MetricDefinition
from domain.parked import is_retry_partition
from domain.ports import Checkpoint, Checkpoints, CounterReader, EventStore, GaugeReading, PositionedLog
from domain.replay import LIVE, ReplayLedger, ReplayStatus
from projections import series as shaping
from projections.buckets import Bucketing
from projections.counters import PROJECTION

#: Events per second shown for a projection that has not written for this long: 0.
RATE_STALE_SECONDS = 10.0


class CounterViews(CounterReader, Checkpoints, Protocol):
    """What the metrics service reads: counters and the projections' checkpoints."""


@dataclass(frozen=True, slots=True)
class SeriesAnswer:
    metric: MetricDefinition
    resolution: str
    points: list[shaping.Point]
    previous: list[shaping.Point] | None
    #: Latest ``occurredAt`` the counters have counted (epoch µs), None before any.
    watermark: int | None


@dataclass(frozen=True, slots=True)
class ProjectionState:
    """One projection's checkpoint in one partition, with how far behind it is."""

    checkpoint: Checkpoint
    lag_events: int | None
    lag_seconds: float | None
    events_per_second: float
    #: The projection's replay requested, running or failed last (None: it serves live).
    replay: ReplayStatus | None = None

    @property
    def state(self) -> str:
        return LIVE if self.replay is None else self.replay.state

    @property
    def progress(self) -> float | None:
        """A running replay's share done, 0..1."""
        return None if self.replay is None else self.replay.progress


def shard_lag_seconds(checkpoints: Sequence[Checkpoint], now: float) -> dict[str, float]:
    """Per DynamoDB Streams shard, how far behind its reader is now: the lag it recorded,
    grown by the time since while it was behind (a stopped reader falls further behind)."""
    lags: dict[str, float] = {}
    for cp in checkpoints:
        if cp.lag_seconds is None or cp.lag_measured_at is None:
            continue
        lag = cp.lag_seconds + max(now - cp.lag_measured_at / 1e6, 0.0) if cp.lag_seconds > 0 else 0.0
        lags[cp.partition] = max(lag, lags.get(cp.partition, 0.0))
    return lags


class CatalogCache:
    """The process's catalog of the metric definitions, caught up (one indexed read) per call."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._catalog = MetricCatalog()
        self._lock = threading.Lock()

    def current(self) -> MetricCatalog:
        with self._lock:
            catalog = self._catalog
            catalog.refresh(self.store)
            return MetricCatalog(dict(catalog.metrics), dict(catalog.gauges), dict(catalog.deleted), catalog.version)


class MetricsService:
    def __init__(
        self,
        events: EventStore,
        views: CounterViews,
        bucketing: Bucketing,
        clock: Clock,
        replays: ReplayLedger | None = None,
    ) -> None:
        self.replays = replays
        self.events = events
        self.views = views
        self.bucketing = bucketing
        self.clock = clock
        self._catalogs = CatalogCache(events)

    # --- reading -----------------------------------------------------------------------

    def catalog(self) -> MetricCatalog:
        return self._catalogs.current()

    def resolve_metric(self, name: str, field: str = "metric") -> MetricDefinition:
        """A defined metric, or the built-in count of an event type seen; else a
        ``ValidationError`` on ``field`` listing what is known."""
        catalog = self.catalog()
        found = catalog.metrics.get(name)
        if found is not None:
            return found
        types = self.views.event_types()
        found = catalog.metric(name, types)
        if found is None:
            known = sorted({*catalog.metrics, *types})
            hint = f"known: {', '.join(known[:20])}" if known else "no metrics yet: post events or use defineMetric"
            raise ValidationError([FieldError(field, f"unknown metric {name!r} ({hint})")])
        return found

    def watermark(self) -> int | None:
        marks = [
            cp.watermark for cp in self.views.checkpoints() if cp.projection == PROJECTION and cp.watermark is not None
        ]
        return max(marks) if marks else None

    def series(
        self,
        principal: Principal,
        metric: str,
        resolution: str,
        span: shaping.Span = shaping.Span(),  # noqa: B008 - frozen
        filters: Sequence[tuple[str, str]] = (),
        compare_to: str | None = None,
        now: float | None = None,
    ) -> SeriesAnswer:
        """One point per bucket of ``resolution``, zero-filled, at ``now`` (the clock's by default)."""
        require(principal, "read")
        definition = self.resolve_metric(metric)
        where = shaping.where_of(definition, filters)
        now = self.clock.now() if now is None else now
        buckets = shaping.plan_buckets(self.bucketing, resolution, now, span)
        points, previous = shaping.read_series(
            self.views, self.bucketing, definition, resolution, buckets, where, now, compare_to
        )
        return SeriesAnswer(definition, resolution, points, previous, self.watermark())

    def breakdown(
        self,
        principal: Principal,
        metric: str,
        dimension: str,
        resolution: str | None = None,
        span: shaping.Span = shaping.Span(),  # noqa: B008 - frozen
        top: int | None = 10,
    ) -> list[shaping.BreakdownRow]:
        """The metric per value of ``dimension`` over a range (default: today), largest first."""
        require(principal, "read")
        definition = self.resolve_metric(metric)
        chosen = resolution or "day"
        if span.last is None and span.start is None:
            span = shaping.Span(end=span.end, last=1)
        buckets = shaping.plan_buckets(self.bucketing, chosen, self.clock.now(), span)
        end = self.bucketing.end(chosen, buckets[-1])
        return shaping.read_breakdown(
            self.views, definition, dimension, chosen, buckets[0], end, 10 if top is None else top
        )

    def gauges(self, principal: Principal, name: str, keys: Sequence[str] | None = None) -> list[GaugeReading]:
        """The latest reading per key of a gauge (all keys, or the ones given)."""
        require(principal, "read")
        if name not in self.catalog().gauges:
            raise ValidationError([FieldError("name", f"unknown gauge {name!r}; defineGauge creates one")])
        return self.views.read_gauges(name, keys)

    def metrics(self, principal: Principal) -> list[MetricDefinition]:
        """Defined metrics, then the built-in count of every event type seen."""
        require(principal, "read")
        catalog = self.catalog()
        defined = [m for _, m in sorted(catalog.metrics.items())]
        builtin = [
            MetricDefinition.builtin_count(t) for t in sorted(self.views.event_types()) if t not in catalog.metrics
        ]
        return defined + builtin

    def skipped_values(self, principal: Principal, names: Sequence[str] | None = None) -> dict[str, int]:
        """Per defined metric of a value (those named, or all): how many facts it left out
        because their value property was present but not a number (the ``SKIPPED`` cell,
        see ``domain.metrics``). Counts have no value to skip and are not listed."""
        require(principal, "read")
        catalog = self.catalog()
        wanted = sorted(catalog.metrics) if names is None else [n for n in names if n in catalog.metrics]
        found: dict[str, int] = {}
        for name in wanted:
            metric = catalog.metrics[name]
            if metric.aggregation != COUNT:
                found[name] = sum(cell.count for cell in self.views.read_counters(metric.key, SKIPPED, 0, 1))
        return found

    def gauge_definitions(self, principal: Principal) -> list[GaugeDefinition]:
        require(principal, "read")
        return [g for _, g in sorted(self.catalog().gauges.items())]

    def projections(self, principal: Principal) -> list[ProjectionState]:
        """Every projection's checkpoints, with lag (in events where the log has one order)
        and the events per second it last reported (0 once stale)."""
        require(principal, "read")
        checkpoints = self.views.checkpoints() or [self.views.checkpoint(PROJECTION)]
        # Ages of stored instants (receivedAt, checkpoint writes) are measured by the machine's clock.
        now = time.time()
        states = []
        shard_lags = shard_lag_seconds(checkpoints, now)
        stamp = self.clock.now()  # leases are stamped by the replaying process's clock
        replays = {name: r.as_of(stamp) for name, r in (self.replays.replays() if self.replays else {}).items()}
        for cp in checkpoints:
            if is_retry_partition(cp.partition):
                continue  # a retried parked event's checkpoint (domain.parked), not a feed's
            lag_events: int | None = None
            lag_seconds: float | None = shard_lags.get(cp.partition)
            if cp.partition == "" and isinstance(self.events, PositionedLog):
                lag_events = max(self.events.last_position() - cp.position, 0)
                lag_seconds = 0.0
                if lag_events:
                    oldest = self.events.read_facts(str(cp.position) if cp.position else None, limit=1).events
                    if oldest:
                        lag_seconds = max(now - oldest[0].received_at.timestamp(), 0.0)
            fresh = cp.updated_at is not None and now - cp.updated_at / 1e6 < RATE_STALE_SECONDS
            rate = cp.events_per_second if fresh else 0.0
            states.append(ProjectionState(cp, lag_events, lag_seconds, rate, replays.get(cp.projection)))
        return states

    # --- definitions -------------------------------------------------------------------

    def define_metric(self, principal: Principal, metric: MetricDefinition) -> MetricDefinition:
        """Record a metric; facts already stored are counted too (the worker backfills)."""
        require(principal, "admin")
        return defs.define_metric(self.events, metric, reserved=self.views.event_types())

    def update_metric(self, principal: Principal, metric: MetricDefinition) -> MetricDefinition:
        require(principal, "admin")
        return defs.update_metric(self.events, metric)

    def delete_metric(self, principal: Principal, name: str) -> MetricDefinition:
        require(principal, "admin")
        return defs.delete_metric(self.events, name)

    def define_gauge(self, principal: Principal, gauge: GaugeDefinition) -> GaugeDefinition:
        require(principal, "admin")
        return defs.define_gauge(self.events, gauge)

    def delete_gauge(self, principal: Principal, name: str) -> GaugeDefinition:
        require(principal, "admin")
        return defs.delete_gauge(self.events, name)
