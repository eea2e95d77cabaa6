"""The alert-rule instances alerting now, as an ``ALERTS`` dashboard widget shows them, read
from rule states kept caught up cheaply.

``RuleStates`` keeps every rule's fold per process and catches it up (one read of the index
stream and one of each rule's stream, past the versions already folded: ``StreamFolds``) at
most every ``refresh_seconds``: a live dashboard asks for ``version()`` every half second, so reading
every rule's whole history each time would not do. ``version()`` grows whenever a rule's
stream does (a transition recorded by any process, or an edit): the token a dashboard's
live value joins to push an alert's change of state.

``alerting`` is what the widget shows: instances in ``FIRING`` or ``RECOVERING`` (still
alerting, Grafana's "firing" side), never the rule's targets (webhook URLs, secrets).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from domain import alerts as rules
from domain.alert_states import ALERTING
from domain.alerts import RuleState
from domain.ports import EventStore
from services.stream_folds import REFRESH_SECONDS, StreamFolds

_SEVERITY_ORDER = {"CRITICAL": 0, "WARNING": 1, "INFO": 2}


@dataclass(frozen=True, slots=True)
class AlertingInstance:
    """One rule instance alerting now: what a public widget may show of it."""

    rule: str
    #: The dimension value (``""`` for a rule with one instance).
    instance: str
    state: str
    severity: str
    value: float | None
    threshold: float
    #: When it entered ``state`` (epoch seconds).
    since: float
    message: str


class RuleStates(StreamFolds[RuleState]):
    """Every rule's fold, caught up from its stream at most every ``refresh_seconds``."""

    def __init__(
        self, store: EventStore, refresh_seconds: float = REFRESH_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(
            store,
            new=RuleState,
            copy=_copy,
            name_of=lambda state: state.name,
            stream_of=rules.rule_stream,
            directory=rules.indexed_names,
            refresh_seconds=refresh_seconds,
            clock=clock,
        )


def _copy(state: RuleState) -> RuleState:
    return replace(state, instances=dict(state.instances), history=list(state.history))


def alerting(
    states: Iterable[RuleState], severities: Iterable[str] | None = None, names: Iterable[str] | None = None
) -> list[AlertingInstance]:
    """The instances in FIRING or RECOVERING of the rules chosen (not paused), most severe
    first, then longest alerting first."""
    wanted_severities = None if severities is None else set(severities)
    wanted_names = None if names is None else set(names)
    found = []
    for state in states:
        rule = state.rule
        if rule is None or state.paused:
            continue
        if wanted_names is not None and rule.name not in wanted_names:
            continue
        if wanted_severities is not None and rule.severity not in wanted_severities:
            continue
        last_message = {t.instance: t.message for t in state.history}
        for key, instance in state.instances.items():
            if instance.state not in ALERTING:
                continue
            found.append(
                AlertingInstance(
                    rule=rule.name,
                    instance=key,
                    state=instance.state,
                    severity=rule.severity,
                    value=instance.value,
                    threshold=rule.threshold,
                    since=instance.since,
                    message=last_message.get(key, ""),
                )
            )
    return sorted(found, key=lambda a: (_SEVERITY_ORDER.get(a.severity, 9), a.since, a.rule, a.instance))
