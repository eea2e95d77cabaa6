"""What an alert rule watches, read from the counters read model at an instant.

A metric rule's value is its aggregation over the last ``window`` buckets of its
resolution: ending with the still-filling bucket when ``include_partial``, else with the
last complete one. Relative conditions (``INCREASE``/``DECREASE``) also read the window
before it. A per-dimension rule has one value per value of its dimension; a dimension
value known to the rule but absent from the window reads as an empty window (0 for a
count or a sum, no data for min, max and avg). A gauge rule reads the gauge's latest
readings (per key, or the one key of its filter).

Reading the same instant twice gives the same values: backtests call it at past instants.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

from domain.alert_states import Observation
from domain.alerts import DECREASE, INCREASE, AlertRule
from domain.metrics import MISSING, MetricCatalog, MetricDefinition
from domain.ports import CounterReader, gauge_marker, metric_marker
from projections.buckets import Bucketing
from projections.series import Totals

_UNREAD = object()


class UnknownSource(Exception):
    """The rule's metric, gauge or dimension does not exist (any more)."""


def resolve_metric(
    rule: AlertRule, catalog: MetricCatalog, event_types: Callable[[], Collection[str]]
) -> MetricDefinition:
    assert rule.metric is not None
    found = catalog.metrics.get(rule.metric) or catalog.metric(rule.metric, event_types())
    if found is None:
        raise UnknownSource(f"no metric named {rule.metric!r}")
    return found


def watched_marker(rule: AlertRule, catalog: MetricCatalog, event_types: Callable[[], Collection[str]]) -> str | None:
    """The change marker whose bump means the rule's value may have changed."""
    if rule.gauge is not None:
        return gauge_marker(rule.gauge)
    try:
        return metric_marker(resolve_metric(rule, catalog, event_types).key)
    except UnknownSource:
        return None


def window_bounds(rule: AlertRule, bucketing: Bucketing, now: float, periods_back: int = 0) -> tuple[int, int]:
    """``[start, stop)`` of the rule's window at ``now`` (epoch seconds), or of the window
    ``periods_back`` windows before it."""
    current = bucketing.floor(rule.resolution, now)
    last = current if rule.include_partial else bucketing.shift(rule.resolution, current, -1)
    last = bucketing.shift(rule.resolution, last, -rule.window * periods_back)
    first = bucketing.shift(rule.resolution, last, -(rule.window - 1))
    return first, bucketing.end(rule.resolution, last)


class AlertValues:
    """Reads rules' values through a ``CounterReader`` (the views store).

    Within ``snapshot()`` (one evaluation pass over many rules) the catalog is read once
    and each distinct read of the views is made once: rules watching the same gauge, or
    the same metric window with the same filters, share it.
    """

    def __init__(self, views: CounterReader, bucketing: Bucketing, catalog: Callable[[], MetricCatalog]) -> None:
        self.views = views
        self.bucketing = bucketing
        self._catalog = catalog
        self._pinned: MetricCatalog | None = None
        self._reads: dict[tuple, Any] | None = None

    def catalog(self) -> MetricCatalog:
        return self._pinned if self._pinned is not None else self._catalog()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One pass: the catalog as it is now, and each views read made at most once."""
        if self._reads is not None:  # nested: the outer pass's snapshot stands
            yield
            return
        self._pinned, self._reads = self._catalog(), {}
        try:
            yield
        finally:
            self._pinned, self._reads = None, None

    def _read(self, key: tuple, read: Callable[[], Any]) -> Any:
        if self._reads is None:
            return read()
        found = self._reads.get(key, _UNREAD)
        if found is _UNREAD:
            found = self._reads[key] = read()
        return found

    def marker(self, rule: AlertRule) -> str | None:
        return watched_marker(rule, self.catalog(), self.views.event_types)

    def observe(self, rule: AlertRule, now: float, known: Collection[str] = ()) -> dict[str, Observation]:
        """Each instance's observation at ``now``; an ``Observation`` with ``error`` for
        every known instance (or the single one) when the rule's source is gone."""
        try:
            if rule.gauge is not None:
                return self._gauge(rule, known)
            return self._metric(rule, now, known)
        except UnknownSource as exc:
            return {key: Observation(None, error=str(exc)) for key in (known or [""])}

    def _gauge(self, rule: AlertRule, known: Collection[str]) -> dict[str, Observation]:
        assert rule.gauge is not None
        if rule.gauge not in self.catalog().gauges:
            raise UnknownSource(f"no gauge named {rule.gauge!r}")
        wanted = dict(rule.filters).get("key")
        gauge = rule.gauge
        if rule.per_dimension:
            keys = [wanted] if wanted else None
            readings = self._read(("gauge", gauge, wanted), lambda: self.views.read_gauges(gauge, keys))
            return {r.key: Observation(r.value) for r in readings}
        key = wanted or MISSING
        readings = self._read(("gauge", gauge, key), lambda: self.views.read_gauges(gauge, [key]))
        return {"": Observation(readings[0].value if readings else None)}

    def _totals(self, metric: MetricDefinition, rule: AlertRule, now: float, back: int) -> dict[str, Totals]:
        where: dict[int, str] = {}
        for dimension, value in rule.filters:
            if dimension not in metric.dimensions:
                raise UnknownSource(f"{dimension!r} is not a dimension of metric {metric.name!r}")
            where[metric.dimensions.index(dimension)] = value
        group_by = None
        if rule.per_dimension:
            if rule.per_dimension not in metric.dimensions:
                raise UnknownSource(f"{rule.per_dimension!r} is not a dimension of metric {metric.name!r}")
            group_by = metric.dimensions.index(rule.per_dimension)
        start, stop = window_bounds(rule, self.bucketing, now, back)
        read_key = ("counters", metric.key, rule.resolution, start, stop, tuple(sorted(where.items())), group_by)
        cells = self._read(
            read_key,
            lambda: self.views.read_counters(metric.key, rule.resolution, start, stop, where or None, group_by),
        )
        totals: dict[str, Totals] = {}
        for cell in cells:
            key = cell.group if group_by is not None and cell.group is not None else ""
            totals[key] = totals.get(key, Totals()).add(cell)
        return totals

    def _metric(self, rule: AlertRule, now: float, known: Collection[str]) -> dict[str, Observation]:
        metric = resolve_metric(rule, self.catalog(), self.views.event_types)
        current = self._totals(metric, rule, now, 0)
        relative = rule.condition in (INCREASE, DECREASE)
        previous = self._totals(metric, rule, now, 1) if relative else {}
        keys = {*current, *known} if rule.per_dimension else {""}
        empty = Totals()
        return {
            key: Observation(
                current.get(key, empty).value(metric.aggregation),
                previous.get(key, empty).value(metric.aggregation) if relative else None,
            )
            for key in keys
        }
