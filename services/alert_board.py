"""The alert-rule instances alerting now, as an ``ALERTS`` dashboard widget shows them, read
from rule states kept caught up cheaply.

``RuleStates`` keeps every rule's fold per process and catches it up (one read of the index
stream and one of each rule's stream, past the versions already folded) at most every
``refresh_seconds``: a live dashboard asks for ``version()`` every half second, so reading
every rule's whole history each time would not do. ``version()`` grows whenever a rule's
stream does (a transition recorded by any process, or an edit): the token a dashboard's
live value joins to push an alert's change of state.

``alerting`` is what the widget shows: instances in ``FIRING`` or ``RECOVERING`` (still
alerting, Grafana's "firing" side), never the rule's targets (webhook URLs, secrets).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from domain import alerts as rules
from domain.alert_states import ALERTING
from domain.alerts import RuleState
from domain.ports import EventStore

#: How stale another process's transitions may look.
REFRESH_SECONDS = 0.5
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


class RuleStates:
    """Every rule's fold, caught up from its stream at most every ``refresh_seconds``."""

    def __init__(
        self, store: EventStore, refresh_seconds: float = REFRESH_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._refresh = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, RuleState] = {}
        self._index_version = 0
        self._checked: float | None = None

    def _catch_up(self) -> None:
        now = self._clock()
        if self._checked is not None and now - self._checked < self._refresh:
            return
        changed = self._store.read_stream(rules.INDEX_STREAM, after_version=self._index_version)
        if changed:
            self._index_version = changed[-1].version or self._index_version + len(changed)
            for event in changed:
                name = event.properties["name"]
                self._states.setdefault(name, RuleState(name))
        for name, state in self._states.items():
            events = self._store.read_stream(rules.rule_stream(name), after_version=state.version)
            if events:
                state.apply(events)
        self._checked = now

    def all(self) -> list[RuleState]:
        """The rules that exist: snapshots, which a later catch-up (another thread's) leaves alone."""
        with self._lock:
            self._catch_up()
            return [_snapshot(s) for s in self._states.values() if s.exists]

    def version(self) -> int:
        """Grows whenever any rule's stream (or the index) does."""
        with self._lock:
            self._catch_up()
            return self._index_version + sum(s.version for s in self._states.values())


def _snapshot(state: RuleState) -> RuleState:
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
