"""Alert rules as every entry point serves them: rules with their instances, history,
deliveries, the commands that change rules (``editor`` scope, or ``admin``), a test send,
and the backtest. Queries need ``read``.

A bad argument raises ``ValidationError`` naming the field, an unknown rule ``NotFound``,
a missing scope ``Forbidden``; GraphQL only translates arguments and shapes answers.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from domain import alerts as rules
from domain.access import Principal, require
from domain.alert_states import Transition, evaluate_rule
from domain.alerts import AlertRule, RuleState
from domain.clock import Clock
from domain.errors import FieldError, NotFound, ValidationError
from domain.metrics import MetricCatalog
from domain.notifiers import Notification
from domain.ports import CounterReader, EventStore
from projections.buckets import Bucketing
from services.alert_board import AlertingInstance, RuleStates, alerting
from services.alert_delivery import Delivery, Outbox
from services.alert_values import AlertValues, UnknownSource, resolve_metric

#: Most evaluation steps one backtest makes (one per bucket of the rule's resolution).
MAX_BACKTEST_STEPS = 10_000


@dataclass(frozen=True, slots=True)
class Backtest:
    rule: AlertRule
    steps: int
    transitions: list[Transition]


class AlertsService:
    def __init__(
        self,
        events: EventStore,
        views: CounterReader,
        bucketing: Bucketing,
        catalog: Callable[[], MetricCatalog],
        outbox: Outbox,
        clock: Clock,
    ) -> None:
        self.events = events
        self.views = views
        self.bucketing = bucketing
        self.catalog = catalog
        self.outbox = outbox
        self.clock = clock
        self.values = AlertValues(views, bucketing, catalog)
        self.states = RuleStates(events)

    # --- reading -----------------------------------------------------------------------

    def rules(self, principal: Principal) -> list[RuleState]:
        require(principal, "read")
        found = (rules.load_rule(self.events, name) for name in rules.rule_names(self.events))
        return [state for state in found if state.exists]

    def rule(self, principal: Principal, name: str) -> RuleState:
        require(principal, "read")
        state = rules.load_rule(self.events, name)
        if not state.exists:
            raise NotFound(f"no alert rule named {name!r}")
        return state

    def history(
        self, principal: Principal, name: str, start: float | None = None, end: float | None = None
    ) -> list[Transition]:
        """The rule's transitions with ``start <= at < end``, oldest first."""
        if start is not None and end is not None and start >= end:
            raise ValidationError([FieldError("from", "must be before to")])
        state = self.rule(principal, name)
        return [t for t in state.history if (start is None or t.at >= start) and (end is None or t.at < end)]

    def alerting(
        self, principal: Principal, severities: tuple[str, ...] | None = None, names: tuple[str, ...] | None = None
    ) -> list[AlertingInstance]:
        """The rule instances in FIRING or RECOVERING now (of these severities, these rules)."""
        require(principal, "read")
        return alerting(self.states.all(), severities, names)

    def states_version(self) -> int:
        """Grows whenever a rule changes or records a transition (for live updates)."""
        return self.states.version()

    def deliveries(self, principal: Principal, name: str) -> list[Delivery]:
        self.rule(principal, name)
        return self.outbox.deliveries(name)

    # --- commands ----------------------------------------------------------------------

    def _check_source(self, rule: AlertRule) -> None:
        """The rule's metric or gauge (and the dimensions it names) exist."""
        rules.validate_rule(rule)
        catalog = self.catalog()
        errors: list[FieldError] = []
        if rule.gauge is not None:
            gauge = catalog.gauges.get(rule.gauge)
            if gauge is None:
                errors.append(FieldError("input.gauge", f"unknown gauge {rule.gauge!r}; defineGauge creates one"))
            elif rule.per_dimension and gauge.key_property is None:
                errors.append(FieldError("input.perDimension", f"gauge {rule.gauge!r} has no key property"))
            elif gauge.key_property and not rule.per_dimension and "key" not in dict(rule.filters):
                errors.append(
                    FieldError(
                        "input.filters",
                        f"gauge {rule.gauge!r} has a reading per {gauge.key_property}:"
                        ' give perDimension, or a filter {dimension: "key", value: ...}',
                    )
                )
        else:
            try:
                metric = resolve_metric(rule, catalog, self.views.event_types)
            except UnknownSource as exc:
                errors.append(FieldError("input.metric", str(exc)))
            else:
                for i, (dimension, _) in enumerate(rule.filters):
                    if dimension not in metric.dimensions:
                        errors.append(
                            FieldError(f"input.filters[{i}].dimension", f"not a dimension of metric {metric.name!r}")
                        )
                if rule.per_dimension and rule.per_dimension not in metric.dimensions:
                    known = ", ".join(metric.dimensions) or "none"
                    errors.append(
                        FieldError("input.perDimension", f"not a dimension of metric {metric.name!r} ({known})")
                    )
        if errors:
            raise ValidationError(errors)

    def define(self, principal: Principal, rule: AlertRule) -> RuleState:
        require(principal, "editor")
        self._check_source(rule)
        return rules.define_rule(self.events, rule)

    def update(self, principal: Principal, rule: AlertRule) -> RuleState:
        require(principal, "editor")
        self._check_source(rule)
        return rules.update_rule(self.events, rule)

    def pause(self, principal: Principal, name: str, paused: bool = True) -> RuleState:
        require(principal, "editor")
        return rules.pause_rule(self.events, name, paused)

    def snooze(self, principal: Principal, name: str, until: float | None) -> RuleState:
        require(principal, "editor")
        if until is not None and until <= self.clock.now():
            raise ValidationError([FieldError("until", "must be in the future (null unsnoozes)")])
        return rules.snooze_rule(self.events, name, until)

    def delete(self, principal: Principal, name: str) -> RuleState:
        require(principal, "editor")
        return rules.delete_rule(self.events, name)

    def test_send(self, principal: Principal, name: str) -> list[Delivery]:
        """Send a test notification to every target of the rule now; each outcome is logged."""
        require(principal, "editor")
        state = self.rule(principal, name)
        assert state.rule is not None
        rule = state.rule
        notification = Notification(
            id=f"test-{uuid.uuid4().hex}",
            rule=rule.name,
            instance="",
            kind="test",
            state="TEST",
            previous_state="TEST",
            value=None,
            threshold=rule.threshold,
            severity=rule.severity,
            message=f"test notification of alert rule {rule.name!r}",
            at=self.clock.now(),
        )
        return [found for t in rule.targets if (found := self.outbox.deliver(rule.name, notification, t)) is not None]

    # --- backtest ----------------------------------------------------------------------

    def backtest(self, principal: Principal, rule: AlertRule, start: float, end: float) -> Backtest:
        """Replay ``rule``'s state machine over the stored counters from ``start`` to
        ``end``, evaluating at the last instant of each bucket of its resolution; the
        transitions it would have recorded (nothing is recorded or sent)."""
        require(principal, "read")
        self._check_source(rule)
        if rule.gauge is not None:
            raise ValidationError(
                [FieldError("input.gauge", "a gauge keeps only its latest reading: backtest a metric rule")]
            )
        if start >= end:
            raise ValidationError([FieldError("from", "must be before to")])
        first = self.bucketing.floor(rule.resolution, start)
        steps = self.bucketing.count(rule.resolution, first, math.ceil(end))
        if steps > MAX_BACKTEST_STEPS:
            raise ValidationError(
                [FieldError("from", f"the range holds {steps} {rule.resolution}s; at most {MAX_BACKTEST_STEPS}")]
            )
        instances: dict = {}
        transitions: list[Transition] = []
        bucket = first
        for _ in range(steps):
            at = min(self.bucketing.end(rule.resolution, bucket), end) - 1e-3
            observed = self.values.observe(rule, at, known=instances.keys())
            instances, made = evaluate_rule(rule, instances, observed, at, len(transitions))
            transitions.extend(made)
            bucket = self.bucketing.shift(rule.resolution, bucket, 1)
        return Backtest(rule, steps, transitions)
