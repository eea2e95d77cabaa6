"""The evaluation state machine of one alert-rule instance (Grafana's states): pure.

    NORMAL ──met──▶ PENDING ──met for `for`──▶ FIRING ──not met──▶ RECOVERING ──not met for
      ▲               │ not met (a blip)         ▲                    │      `keepFiringFor`──▶ NORMAL
      └───────────────┘                          └──────met again─────┘

plus ``NO_DATA`` (no value and the rule's no-data mode is ``OK``: healthy, but shown as
such) and ``ERROR`` (the value could not be read). With ``for`` = 0 a met condition fires
at once; with ``keepFiringFor`` = 0 an unmet one resolves at once.

``evaluate(rule, instance, key, observation, now, version)`` is the whole machine: the
instance's state after observing a value (or none) at ``now``, and the transition it made
(at most one per evaluation). A transition into ``FIRING`` from a healthy state, and out of
``FIRING``/``RECOVERING`` into a healthy one, is *notified* (unless the rule is snoozed);
others are only recorded. Its id is derived from the rule, the instance, the rule stream's
version it was decided at and the new state, so two evaluations of the same state record
and notify it once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.alerts import (
    ABOVE,
    BELOW,
    DECREASE,
    INCREASE,
    NO_DATA_ALERTING,
    NO_DATA_KEEP_LAST,
    OUTSIDE,
    TRANSITION,
    AlertRule,
)

NORMAL, PENDING, FIRING, RECOVERING, NO_DATA, ERROR = "NORMAL", "PENDING", "FIRING", "RECOVERING", "NO_DATA", "ERROR"
STATES = (NORMAL, PENDING, FIRING, RECOVERING, NO_DATA, ERROR)
HEALTHY = frozenset({NORMAL, NO_DATA, ERROR})
ALERTING = frozenset({FIRING, RECOVERING})


@dataclass(frozen=True, slots=True)
class Observation:
    """What an evaluation saw: the value (None: no data), the previous period's value for
    relative conditions, or the error that kept it from reading one."""

    value: float | None
    previous: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class InstanceState:
    state: str = NORMAL
    #: When it entered ``state`` (epoch seconds).
    since: float = 0.0
    #: The last value observed (what ``KEEP_LAST`` keeps), and its previous period's.
    value: float | None = None
    previous: float | None = None

    @classmethod
    def after(cls, transition: Transition) -> InstanceState:
        return cls(transition.to_state, transition.at, transition.value, transition.previous)


@dataclass(frozen=True, slots=True)
class Transition:
    id: str
    rule: str
    instance: str
    from_state: str
    to_state: str
    at: float
    value: float | None
    previous: float | None
    threshold: float
    #: Whether it is announced (into FIRING, or resolved), decided when it was recorded.
    notify: bool
    message: str
    severity: str
    error: str | None = None

    @property
    def kind(self) -> str:
        """``firing``, ``resolved`` or ``changed`` (recorded, not announced)."""
        if self.to_state == FIRING and self.from_state not in ALERTING:
            return "firing"
        if self.from_state in ALERTING and self.to_state in HEALTHY:
            return "resolved"
        return "changed"

    def as_properties(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "instance": self.instance,
            "from": self.from_state,
            "to": self.to_state,
            "at": self.at,
            "value": self.value,
            "previous": self.previous,
            "threshold": self.threshold,
            "notify": self.notify,
            "message": self.message,
            "severity": self.severity,
            "error": self.error,
        }

    @classmethod
    def from_properties(cls, props: Mapping[str, Any]) -> Transition:
        return cls(
            props["id"],
            props["rule"],
            props["instance"],
            props["from"],
            props["to"],
            float(props["at"]),
            props.get("value"),
            props.get("previous"),
            float(props["threshold"]),
            bool(props["notify"]),
            props.get("message", ""),
            props.get("severity", "WARNING"),
            props.get("error"),
        )


TRANSITION_EVENT = TRANSITION


def transition_id(rule: str, instance: str, version: int, to_state: str) -> str:
    """Deterministic: the same decision (same rule, instance, stream version and outcome)
    has the same id however often it is made, so recording it twice collides."""
    digest = hashlib.sha256(f"{rule}\x00{instance}\x00{version}\x00{to_state}".encode()).hexdigest()
    return f"tr-{digest[:32]}"


def condition_met(rule: AlertRule, value: float, previous: float | None) -> bool | None:
    """Whether ``value`` meets the rule's condition; None when a relative condition has
    no previous period to compare with."""
    if rule.condition == ABOVE:
        return value > rule.threshold
    if rule.condition == BELOW:
        return value < rule.threshold
    if rule.condition == OUTSIDE:
        return value < rule.threshold or value > (rule.upper if rule.upper is not None else rule.threshold)
    if previous is None:
        return None
    if previous == 0:
        # From nothing, any rise is an unbounded increase and there is nothing to drop.
        return value > 0 if rule.condition == INCREASE else False
    change = (value - previous) / abs(previous) * 100.0
    if rule.condition == INCREASE:
        return change >= rule.threshold
    if rule.condition == DECREASE:
        return -change >= rule.threshold
    raise ValueError(f"unknown condition {rule.condition!r}")


def _format(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value:g}"


def render_message(rule: AlertRule, state: str, instance: str, value: float | None) -> str:
    threshold = _format(rule.threshold)
    if rule.upper is not None:
        threshold = f"{threshold}..{_format(rule.upper)}"
    fields = {
        "rule": rule.name,
        "state": state,
        "value": _format(value),
        "threshold": threshold,
        "dimension": f"for {rule.per_dimension}={instance}" if rule.per_dimension else "",
        "severity": rule.severity,
        "condition": rule.condition.lower(),
    }
    return rule.message.format_map(fields).strip()


def _next_state(rule: AlertRule, current: InstanceState, met: bool, healthy: str, now: float) -> str:
    state = current.state
    if state in HEALTHY:
        if not met:
            return healthy
        return FIRING if rule.for_seconds <= 0 else PENDING
    if state == PENDING:
        if not met:
            return healthy  # the blip `for` holds back
        return FIRING if now - current.since >= rule.for_seconds else PENDING
    if state == FIRING:
        if met:
            return FIRING
        return healthy if rule.keep_firing_for_seconds <= 0 else RECOVERING
    if state == RECOVERING:
        if met:
            return FIRING  # it never stopped firing: nothing is announced
        return healthy if now - current.since >= rule.keep_firing_for_seconds else RECOVERING
    raise ValueError(f"unknown state {state!r}")


def evaluate(
    rule: AlertRule,
    instance: InstanceState | None,
    key: str,
    observation: Observation,
    now: float,
    version: int,
    snoozed: bool = False,
) -> tuple[InstanceState, Transition | None]:
    """The instance ``key``'s state after ``observation`` at ``now``, and its transition
    (None: it stays). ``version``: the rule stream's version the instance state was read
    at (it names the transition). ``snoozed``: record, but announce nothing."""
    current = instance or InstanceState(NORMAL, now)
    value, previous = observation.value, observation.previous
    if observation.error is not None:
        target, met = ERROR, None
    else:
        if value is None and rule.no_data == NO_DATA_KEEP_LAST and current.value is not None:
            value, previous = current.value, current.previous
        met = None if value is None else condition_met(rule, value, previous)
        if met is None:
            # No value (or nothing to compare with): what the rule says no data means.
            target = _next_state(rule, current, rule.no_data == NO_DATA_ALERTING, NO_DATA, now)
        else:
            target = _next_state(rule, current, met, NORMAL, now)
    kept = InstanceState(current.state, current.since, value, previous)
    if target == current.state:
        return kept, None
    transition = Transition(
        id=transition_id(rule.name, key, version, target),
        rule=rule.name,
        instance=key,
        from_state=current.state,
        to_state=target,
        at=now,
        value=value,
        previous=previous,
        threshold=rule.threshold,
        notify=False,
        message=render_message(rule, target, key, value),
        severity=rule.severity,
        error=observation.error,
    )
    announce = transition.kind in ("firing", "resolved") and not snoozed
    transition = Transition(**{**_fields(transition), "notify": announce})
    return InstanceState.after(transition), transition


def _fields(transition: Transition) -> dict[str, Any]:
    return {name: getattr(transition, name) for name in Transition.__slots__}


def evaluate_rule(
    rule: AlertRule,
    instances: Mapping[str, InstanceState],
    observations: Mapping[str, Observation],
    now: float,
    version: int,
    snoozed: bool = False,
) -> tuple[dict[str, InstanceState], list[Transition]]:
    """Every instance of a rule: those observed now, and those known before but missing
    from ``observations`` (no data for them). Returns the new states and the transitions,
    in instance order."""
    states: dict[str, InstanceState] = dict(instances)
    transitions: list[Transition] = []
    for key in sorted({*instances, *observations}):
        observed = observations.get(key, Observation(None))
        if (
            key not in instances
            and observed.value is None
            and observed.error is None
            and rule.no_data != NO_DATA_ALERTING
        ):
            # Data never seen is not data gone missing: no NO_DATA for a rule just defined,
            # or for every rule while a worker catches up from scratch.
            continue
        state, transition = evaluate(rule, instances.get(key), key, observed, now, version, snoozed)
        states[key] = state
        if transition is not None:
            transitions.append(transition)
    return states, transitions
