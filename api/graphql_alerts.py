"""GraphQL for alerts: rules with their instances, history, deliveries, backtest; the
commands that change rules (editor or admin); and the ``alertUpdated`` subscription.

Resolvers translate arguments, call ``pulse.alerts`` (``services/alerts.py``, which checks
the scope) and shape the answer; a bad argument is a ``BAD_USER_INPUT`` error naming the
field (``input.threshold``, ``input.targets[0].url``...), as for the metrics mutations.
Webhook secrets are write-only: no query returns them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.types import Info

from api.auth import Principal, caller, require_scope
from api.context import Pulse
from api.graphql_metrics import Resolution, guarded
from domain import alerts as rules
from domain.alert_states import Transition
from domain.alerts import AlertRule, RuleState, Target
from domain.ports import EventStore
from services.alert_delivery import Delivery

#: How often an ``alertUpdated`` stream looks for new transitions.
POLL_SECONDS = 0.2


def _enum(name: str, values: tuple[str, ...], description: str) -> type[Enum]:
    return strawberry.enum(Enum(name, {v: v for v in values}), description=description)  # type: ignore[return-value]


AlertCondition = _enum(
    "AlertCondition",
    rules.CONDITIONS,
    "ABOVE/BELOW the threshold, OUTSIDE [threshold, upper], or a relative INCREASE/DECREASE of at least"
    " threshold % against the previous window.",
)
NoDataMode = _enum("NoDataMode", rules.NO_DATA_MODES, "What no value means: OK, ALERTING, or KEEP_LAST value.")
AlertSeverity = _enum("AlertSeverity", rules.SEVERITIES, "Sent as the `severity` SNS message attribute.")
TargetKind = _enum("TargetKind", rules.TARGET_KINDS, "Where notifications go.")
AlertState = _enum(
    "AlertState",
    ("NORMAL", "PENDING", "FIRING", "RECOVERING", "NO_DATA", "ERROR"),
    "An instance's state (Grafana's): NORMAL → PENDING → FIRING → RECOVERING → NORMAL, plus NO_DATA and ERROR.",
)


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@strawberry.input
class AlertFilterInput:
    dimension: str = strawberry.field(description='A metric dimension, or "key" for one key of a gauge.')
    value: str


@strawberry.input
class AlertTargetInput:
    kind: TargetKind  # type: ignore[valid-type]
    url: str | None = strawberry.field(default=None, description="WEBHOOK: where to POST.")
    secret: str | None = strawberry.field(
        default=None, description="WEBHOOK: 16+ characters; signs X-Pulse-Signature (HMAC-SHA256)."
    )
    topic_arn: str | None = strawberry.field(default=None, description="SNS: the topic; default PULSE_SNS_TOPIC_ARN.")


@strawberry.input
class AlertRuleInput:
    name: str
    condition: AlertCondition  # type: ignore[valid-type]
    threshold: float
    metric: str | None = strawberry.field(default=None, description="Watch a metric (or give gauge).")
    gauge: str | None = None
    upper: float | None = strawberry.field(default=None, description="OUTSIDE: the band's upper bound.")
    resolution: Resolution = Resolution.MINUTE
    window: int = strawberry.field(default=1, description="Buckets of resolution the metric is aggregated over.")
    include_partial: bool = strawberry.field(default=True, description="Whether the still-filling bucket counts.")
    filter: list[AlertFilterInput] = strawberry.field(default_factory=list)
    per_dimension: str | None = strawberry.field(
        default=None, description="One instance per value of this dimension (any name, for a gauge: per key)."
    )
    for_seconds: float = strawberry.field(default=0, description="How long the condition must hold to fire.")
    keep_firing_for_seconds: float = strawberry.field(default=0, description="Hold FIRING this long: no flapping.")
    no_data: NoDataMode = NoDataMode["OK"]  # type: ignore[valid-type]
    severity: AlertSeverity = AlertSeverity["WARNING"]  # type: ignore[valid-type]
    message: str = strawberry.field(default=rules.DEFAULT_MESSAGE, description=f"Fields: {rules.MESSAGE_FIELDS}.")
    targets: list[AlertTargetInput] = strawberry.field(
        default_factory=lambda: [AlertTargetInput(kind=TargetKind["LOG"])]
    )


def rule_of(given: AlertRuleInput) -> AlertRule:
    def text(value: object) -> str:
        return value.value if isinstance(value, Enum) else str(value)

    return AlertRule(
        name=given.name,
        condition=text(given.condition),
        threshold=given.threshold,
        metric=given.metric,
        gauge=given.gauge,
        upper=given.upper,
        resolution=given.resolution.value,
        window=given.window,
        include_partial=given.include_partial,
        filters=tuple((f.dimension, f.value) for f in given.filter),
        per_dimension=given.per_dimension,
        for_seconds=given.for_seconds,
        keep_firing_for_seconds=given.keep_firing_for_seconds,
        no_data=text(given.no_data),
        severity=text(given.severity),
        message=given.message,
        targets=tuple(Target(text(t.kind), t.url, t.secret, t.topic_arn) for t in given.targets),
    )


@strawberry.type
class AlertTarget:
    kind: str
    url: str | None
    topic_arn: str | None


@strawberry.type
class AlertInstance:
    key: str = strawberry.field(description='The dimension value ("" for a rule with one instance).')
    state: str
    since: datetime
    value: float | None


@strawberry.type
class AlertTransition:
    id: str
    rule: str
    instance: str
    from_state: str
    to_state: str
    at: datetime
    value: float | None
    threshold: float
    notified: bool = strawberry.field(description="Announced to the targets (into FIRING, or resolved).")
    message: str
    severity: str


@strawberry.type
class AlertRuleView:
    name: str
    condition: str
    threshold: float
    upper: float | None
    metric: str | None
    gauge: str | None
    resolution: str
    window: int
    include_partial: bool
    per_dimension: str | None
    for_seconds: float
    keep_firing_for_seconds: float
    no_data: str
    severity: str
    message: str
    targets: list[AlertTarget]
    paused: bool
    snoozed_until: datetime | None
    version: int
    instances: list[AlertInstance]
    firing: int = strawberry.field(description="Instances FIRING or RECOVERING now.")


@strawberry.type
class NotificationDelivery:
    transition_id: str
    instance: str
    target: str
    status: str = strawberry.field(description="delivered or failed (after its retries).")
    attempts: int
    status_codes: list[int | None]
    error: str | None
    at: datetime


@strawberry.type
class AlertBacktest:
    steps: int = strawberry.field(description="Evaluations made: one per bucket of the rule's resolution.")
    transitions: list[AlertTransition]


def transition_view(t: Transition) -> AlertTransition:
    return AlertTransition(
        id=t.id,
        rule=t.rule,
        instance=t.instance,
        from_state=t.from_state,
        to_state=t.to_state,
        at=datetime.fromtimestamp(t.at, UTC),
        value=t.value,
        threshold=t.threshold,
        notified=t.notify,
        message=t.message,
        severity=t.severity,
    )


def rule_view(state: RuleState) -> AlertRuleView:
    rule = state.rule
    assert rule is not None
    return AlertRuleView(
        name=rule.name,
        condition=rule.condition,
        threshold=rule.threshold,
        upper=rule.upper,
        metric=rule.metric,
        gauge=rule.gauge,
        resolution=rule.resolution,
        window=rule.window,
        include_partial=rule.include_partial,
        per_dimension=rule.per_dimension,
        for_seconds=rule.for_seconds,
        keep_firing_for_seconds=rule.keep_firing_for_seconds,
        no_data=rule.no_data,
        severity=rule.severity,
        message=rule.message,
        targets=[AlertTarget(kind=t.kind, url=t.url, topic_arn=t.topic_arn) for t in rule.targets],
        paused=state.paused,
        snoozed_until=_time(state.snoozed_until),
        version=state.version,
        instances=[
            AlertInstance(key=key, state=i.state, since=datetime.fromtimestamp(i.since, UTC), value=i.value)
            for key, i in sorted(state.instances.items())
        ],
        firing=sum(1 for i in state.instances.values() if i.state in ("FIRING", "RECOVERING")),
    )


def delivery_view(d: Delivery) -> NotificationDelivery:
    return NotificationDelivery(
        transition_id=d.transition_id,
        instance=d.instance,
        target=d.target,
        status=d.status,
        attempts=d.attempts,
        status_codes=list(d.status_codes),
        error=d.error,
        at=datetime.fromtimestamp(d.at, UTC),
    )


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


@strawberry.type
class AlertsQuery:
    @strawberry.field(description="Every alert rule, with its instances' states. Needs read.")
    def alert_rules(self, info: Info) -> list[AlertRuleView]:
        pulse, principal = caller(info)
        return [rule_view(s) for s in guarded(lambda: pulse.alerts.rules(principal))]

    @strawberry.field(description="One alert rule with its instances and their states. Needs read.")
    def alert_rule(self, info: Info, name: str) -> AlertRuleView:
        pulse, principal = caller(info)
        return rule_view(guarded(lambda: pulse.alerts.rule(principal, name)))

    @strawberry.field(description="A rule's transitions (its history), oldest first, in [from, to). Needs read.")
    def alert_history(
        self,
        info: Info,
        rule: str,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
    ) -> list[AlertTransition]:
        pulse, principal = caller(info)
        found = guarded(lambda: pulse.alerts.history(principal, rule, _seconds(from_), _seconds(to)))
        return [transition_view(t) for t in found]

    @strawberry.field(description="The delivery log of a rule's notifications, with status codes. Needs read.")
    def notification_deliveries(self, info: Info, rule: str) -> list[NotificationDelivery]:
        pulse, principal = caller(info)
        return [delivery_view(d) for d in guarded(lambda: pulse.alerts.deliveries(principal, rule))]

    @strawberry.field(
        description="The transitions a rule (saved or not) would have made over the stored counters in"
        " [from, to): tune a threshold before saving it. Records and sends nothing. Needs read."
    )
    def alert_backtest(
        self,
        info: Info,
        rule: AlertRuleInput,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime | None = None,
    ) -> AlertBacktest:
        pulse, principal = caller(info)

        def run():
            end = pulse.clock.now() if to is None else to.timestamp()
            return pulse.alerts.backtest(principal, rule_of(rule), from_.timestamp(), end)

        found = guarded(run)
        return AlertBacktest(steps=found.steps, transitions=[transition_view(t) for t in found.transitions])


@strawberry.type
class AlertsMutation:
    @strawberry.mutation(description="Define an alert rule. Needs editor.")
    def define_alert_rule(self, info: Info, input: AlertRuleInput) -> AlertRuleView:
        pulse, principal = caller(info)
        return rule_view(guarded(lambda: pulse.alerts.define(principal, rule_of(input))))

    @strawberry.mutation(description="Replace an alert rule's definition; its instances keep their states. Editor.")
    def update_alert_rule(self, info: Info, input: AlertRuleInput) -> AlertRuleView:
        pulse, principal = caller(info)
        return rule_view(guarded(lambda: pulse.alerts.update(principal, rule_of(input))))

    @strawberry.mutation(description="Pause (no evaluation) or resume an alert rule. Needs editor.")
    def pause_alert_rule(self, info: Info, name: str, paused: bool = True) -> AlertRuleView:
        pulse, principal = caller(info)
        return rule_view(guarded(lambda: pulse.alerts.pause(principal, name, paused)))

    @strawberry.mutation(description="Record but announce nothing until `until` (null: unsnooze). Needs editor.")
    def snooze_alert_rule(self, info: Info, name: str, until: datetime | None = None) -> AlertRuleView:
        pulse, principal = caller(info)
        return rule_view(guarded(lambda: pulse.alerts.snooze(principal, name, _seconds(until))))

    @strawberry.mutation(description="Delete an alert rule; its history stays in the log. Needs editor.")
    def delete_alert_rule(self, info: Info, name: str) -> bool:
        pulse, principal = caller(info)
        guarded(lambda: pulse.alerts.delete(principal, name))
        return True

    @strawberry.mutation(description="Send a test notification to each of a rule's targets now. Needs editor.")
    def test_alert_rule(self, info: Info, name: str) -> list[NotificationDelivery]:
        pulse, principal = caller(info)
        return [delivery_view(d) for d in guarded(lambda: pulse.alerts.test_send(principal, name))]


@strawberry.type
class AlertUpdate:
    rules: list[AlertRuleView] = strawberry.field(
        description="First every rule watched (one, or all) as it is now; then the rules that changed."
    )
    transitions: list[AlertTransition] = strawberry.field(
        description="Empty in the first payload; then the transitions recorded since the last one."
    )


@strawberry.type
class AlertsSubscription:
    @strawberry.subscription(
        description="The rules' states now (of one rule, or of every rule), then each batch of transitions as it"
        " is recorded, with the rules it changed. Needs read."
    )
    async def alert_updated(self, info: Info, rule: str | None = None) -> AsyncGenerator[AlertUpdate, None]:
        principal = require_scope(info, "read")
        pulse = info.context["pulse"]
        if rule is not None:
            guarded(lambda: pulse.alerts.rule(principal, rule))  # an unknown rule fails before the stream
        feed = _TransitionFeed(pulse.store, rule)
        first = await asyncio.to_thread(lambda: guarded(lambda: _first_update(pulse, principal, feed)))
        return _updates(pulse, principal, feed, first)


def _first_update(pulse: Pulse, principal: Principal, feed: _TransitionFeed) -> AlertUpdate:
    feed.start()
    states = [pulse.alerts.rule(principal, feed.rule)] if feed.rule is not None else pulse.alerts.rules(principal)
    return AlertUpdate(rules=[rule_view(s) for s in states], transitions=[])


def _changed_update(pulse: Pulse, principal: Principal, feed: _TransitionFeed) -> AlertUpdate | None:
    transitions = feed.poll()
    if not transitions:
        return None
    states = [rules.load_rule(pulse.store, name) for name in sorted({t.rule for t in transitions})]
    return AlertUpdate(
        rules=[rule_view(s) for s in states if s.exists], transitions=[transition_view(t) for t in transitions]
    )


async def _updates(
    pulse: Pulse, principal: Principal, feed: _TransitionFeed, first: AlertUpdate
) -> AsyncGenerator[AlertUpdate, None]:
    yield first
    while True:
        await asyncio.sleep(POLL_SECONDS)
        update = await asyncio.to_thread(_changed_update, pulse, principal, feed)
        if update is not None:
            yield update


class _TransitionFeed:
    """New transitions of one rule, or of every rule (found through the index stream),
    read from the rules' streams: the worker recording them may be another process."""

    def __init__(self, store: EventStore, rule: str | None) -> None:
        self.store = store
        self.rule = rule
        self.names: set[str] = {rule} if rule is not None else set()
        self.seen: dict[str, int] = {}
        self._index_version = 0

    def _refresh_names(self) -> None:
        if self.rule is None:
            changed = self.store.read_stream(rules.INDEX_STREAM, after_version=self._index_version)
            if changed:
                self._index_version = changed[-1].version or self._index_version + len(changed)
                self.names.update(e.properties["name"] for e in changed)

    def start(self) -> None:
        """From now on: what the rules' streams hold already is not news."""
        self._refresh_names()
        for name in self.names:
            self.seen[name] = rules.load_rule(self.store, name).version

    def poll(self) -> list[Transition]:
        self._refresh_names()
        found: list[Transition] = []
        for name in sorted(self.names):
            events = self.store.read_stream(rules.rule_stream(name), after_version=self.seen.get(name, 0))
            if events:
                self.seen[name] = events[-1].version or self.seen.get(name, 0)
                found.extend(Transition.from_properties(e.properties) for e in events if e.type == rules.TRANSITION)
        return found


__all__ = ["AlertsMutation", "AlertsQuery", "AlertsSubscription"]
