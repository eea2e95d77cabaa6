"""Alert evaluation on the projection engine: the ``alerts`` handler.

Driven two ways:

- by the feed: after the counters handler applied a batch (it comes first in the
  backends' handler lists), the change markers (``ChangeMarkers``, one read) say which
  metrics and gauges changed; only the rules watching those are evaluated, at most every
  ``change_seconds`` (1 s; what is pending then waits for the next step or ``flush``);
- by the clock: every ``tick_seconds`` (checked in ``prepare``, which drivers call before
  each step, idle or not; 5 s) and on ``maintain(now)`` (the drivers' housekeeping, the AWS
  scheduled tick) every active rule is evaluated, for what time alone changes: a window
  sliding, ``for`` or ``keepFiringFor`` elapsing, data going missing.

Evaluation reads the *current* values, not the batch: so a batch seen twice, or a worker
killed between the counters' commit and this handler, re-evaluates the same state and
finds nothing new to record. Transitions are appended to the rule's stream at the version
the evaluation read (and with the transition id as event id, unique in the store), so of
two evaluators deciding the same transition one records it and the other gets a
``ConcurrencyError``, reloads and re-decides. Recording is all this handler does;
notifying is the outbox's (``services.alert_delivery``), which reads the recorded
transitions, never inside a batch.

A replay batch (``FeedBatch.replay``) evaluates nothing: the counters it rebuilds are
partial until the replay ends, and a replay is not news.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from domain import alerts
from domain.alert_states import Transition, evaluate_rule
from domain.alerts import INDEX_STREAM, TRANSITION, RuleState, rule_stream
from domain.clock import SYSTEM_CLOCK, Clock
from domain.errors import ConcurrencyError
from domain.events import Event
from domain.ports import ChangeMarkers, EventStore
from services.alert_values import AlertValues
from services.engine import FeedBatch

log = logging.getLogger(__name__)

PROJECTION = "alerts"
#: How often every rule is evaluated for what time alone changes.
TICK_SECONDS = 5.0
#: Changed rules are evaluated at most this often: a worker catching up evaluates the
#: state it reached, not every batch on the way (pending changes are evaluated by the next
#: ``prepare`` past the interval, or by ``flush`` once caught up).
CHANGE_SECONDS = 1.0

#: Told of every batch of transitions recorded for a rule (the outbox's wake-up call).
Recorded = Callable[[RuleState, list[Transition]], None]


class RuleBook:
    """Every rule's state, folded from its stream and kept up to date through the index."""

    def __init__(self, events: EventStore) -> None:
        self.events = events
        self.rules: dict[str, RuleState] = {}
        self._index_version = 0
        #: Moves whenever a rule's definition (or pause) may have changed.
        self.version = 0

    def refresh(self) -> set[str]:
        """Reload the rules the index says changed; their names."""
        changed = self.events.read_stream(INDEX_STREAM, after_version=self._index_version)
        if not changed:
            return set()
        self._index_version = changed[-1].version or self._index_version + len(changed)
        names = {event.properties["name"] for event in changed}
        for name in names:
            self.reload(name)
        return names

    def reload(self, name: str) -> RuleState:
        state = self.rules[name] = alerts.load_rule(self.events, name)
        self.version += 1
        return state

    def catch_up(self, name: str) -> RuleState:
        """The rule with whatever was appended to its stream since it was loaded."""
        state = self.rules.get(name) or self.reload(name)
        state.apply(self.events.read_stream(rule_stream(name), after_version=state.version))
        return state

    def active(self) -> list[RuleState]:
        return [s for s in self.rules.values() if s.exists and not s.paused]

    def forget(self) -> None:
        self.rules.clear()
        self._index_version = 0
        self.version += 1


def transition_event(transition: Transition) -> Event:
    return Event(
        type=TRANSITION,
        occurred_at=datetime.fromtimestamp(transition.at, UTC),
        properties=transition.as_properties(),
        id=transition.id,
    )


class AlertsHandler:
    """The alerts read model as the engine drives it (see the module docstring)."""

    name = PROJECTION

    def __init__(
        self,
        events: EventStore,
        markers: ChangeMarkers,
        values: AlertValues,
        counters_position: Callable[[str], int],
        clock: Clock = SYSTEM_CLOCK,
        recorded: Recorded | None = None,
        tick_seconds: float = TICK_SECONDS,
        change_seconds: float = CHANGE_SECONDS,
        ticked: Callable[[], None] | None = None,
        stopped: Callable[[], None] | None = None,
    ) -> None:
        self.events = events
        self.markers = markers
        self.values = values
        self.counters_position = counters_position
        self.clock = clock
        self.recorded = recorded
        self.tick_seconds = tick_seconds
        self.change_seconds = change_seconds
        #: Called on every tick (starts the dispatcher, which then finds what is owed).
        self.ticked = ticked
        self.stopped = stopped
        self._changes_pending = False
        self._changes_at: float | None = None
        self.book = RuleBook(events)
        self._positions: dict[str, int] = {}
        self._seen_markers: dict[str, int] | None = None
        #: ((rule book version, catalog version), {change marker: names of the rules watching it}).
        self._watching: tuple[tuple[int, int], dict[str, list[str]]] | None = None
        self._ticked_at: float | None = None
        #: Rules with announced transitions since ``take_owed`` (when nothing is told: Lambda).
        self._owed: set[str] = set()

    # --- the engine's handler port --------------------------------------------------------

    def position(self, partition: str) -> int:
        # Alerts read the counters' state, not the batch: they start where the counters are
        # and never hold the feed back (what a restart missed, the first tick evaluates).
        found = self._positions.get(partition)
        if found is None:
            found = self._positions[partition] = self.counters_position(partition)
        return found

    def prepare(self) -> None:
        if self._ticked_at is None or time.monotonic() - self._ticked_at >= self.tick_seconds:
            self.tick(self.clock.now())
        elif self._changes_pending and self._changes_due():
            self.evaluate_changes()

    def _changes_due(self) -> bool:
        return self._changes_at is None or time.monotonic() - self._changes_at >= self.change_seconds

    def evaluate_changes(self) -> list[Transition]:
        """Evaluate the rules whose metric or gauge changed since the last evaluation."""
        self._changes_at = time.monotonic()
        self._changes_pending = False
        self.book.refresh()
        return self.evaluate(self._changed_rules(), self.clock.now())

    def handle(self, batch: FeedBatch) -> bool:
        # A partition not seen yet (no ``position`` asked before the batch): evaluate it;
        # evaluating twice records nothing twice.
        if batch.upto <= self._positions.get(batch.partition, batch.first - 1):
            return False
        self._positions[batch.partition] = batch.upto
        if batch.replay:
            return False
        self._changes_pending = True
        if not self._changes_due():
            return False
        return bool(self.evaluate_changes())

    def maintain(self, now: float) -> None:
        self.tick(now)

    def forget(self) -> None:
        self._positions.clear()
        self.book.forget()
        self._seen_markers = None
        self._watching = None

    def close(self) -> None:
        if self.stopped is not None:
            self.stopped()  # the delivery thread, before the stores it writes close

    def flush(self) -> None:
        if self._changes_pending:  # caught up, or stopping: evaluate what changed
            self.evaluate_changes()

    # --- evaluation -----------------------------------------------------------------------

    def tick(self, now: float) -> list[Transition]:
        """Evaluate every active rule at ``now``: the clock's part of the machine."""
        self._ticked_at = time.monotonic()
        self.book.refresh()
        self._changed_markers()  # what the tick evaluates need not be evaluated again
        self._changes_pending = False
        if self.ticked is not None:
            self.ticked()
        return self.evaluate([s.name for s in self.book.active()], now)

    def take_owed(self) -> list[str]:
        """The rules that recorded announced transitions since the last call (when no
        ``recorded`` hook delivers them: the Lambda handlers drain the outbox themselves)."""
        owed, self._owed = sorted(self._owed), set()
        return owed

    def _changed_markers(self) -> set[str]:
        markers = self.markers.change_markers()
        seen, self._seen_markers = self._seen_markers, markers
        if seen is None:
            return set(markers)
        return {key for key, version in markers.items() if seen.get(key) != version}

    def _changed_rules(self) -> list[str]:
        changed = self._changed_markers()
        if not changed:
            return []
        catalog = self.values.catalog()
        if self._watching is None or self._watching[0] != (self.book.version, catalog.version):
            watching: dict[str, list[str]] = {}
            with self.values.snapshot():
                for state in self.book.active():
                    if state.rule is not None and (marker := self.values.marker(state.rule)) is not None:
                        watching.setdefault(marker, []).append(state.name)
            self._watching = ((self.book.version, catalog.version), watching)
        return sorted({name for marker in changed for name in self._watching[1].get(marker, ())})

    def evaluate(self, names: Iterable[str], now: float) -> list[Transition]:
        """Evaluate the named rules at ``now`` and record their transitions; those recorded."""
        recorded: list[Transition] = []
        with self.values.snapshot():
            for name in names:
                recorded.extend(self._evaluate_rule(name, now))
        return recorded

    def _evaluate_rule(self, name: str, now: float) -> list[Transition]:
        for _ in range(2):
            state = self.book.rules.get(name)
            if state is None or not state.exists or state.paused or state.rule is None:
                return []
            observations = self.values.observe(state.rule, now, known=state.instances.keys())
            _, transitions = evaluate_rule(
                state.rule, state.instances, observations, now, state.version, state.snoozed(now)
            )
            if not transitions:
                return []
            try:
                self.events.append(rule_stream(name), [transition_event(t) for t in transitions], state.version)
            except ConcurrencyError:
                # Another evaluator (or command) got there first: re-decide on what it wrote.
                self.book.catch_up(name)
                continue
            self.book.catch_up(name)
            if self.recorded is not None:
                self.recorded(state, transitions)
            elif any(t.notify for t in transitions):
                self._owed.add(name)
            return transitions
        log.info("alert rule %s: lost two races in a row; the next evaluation decides", name)
        return []
