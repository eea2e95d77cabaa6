"""The alerts outbox: announces recorded transitions, once, and logs every delivery.

The outbox is the rules' streams themselves: a transition recorded with ``notify`` is
owed to each of the rule's targets until the rule's delivery stream
(``alert-deliveries:<rule>``) holds an outcome for that pair. Delivering:

1. *claim* the pair by appending a claim whose event id is derived from the transition,
   the target and the claim's number (event ids are unique in the store), so of two
   dispatchers only one sends;
2. send, retrying with backoff (``BACKOFF_SECONDS``) while the failure may pass;
3. append the outcome: ``delivered`` or ``failed``, with every attempt's status code.

A claim left without an outcome for ``STALE_CLAIM_SECONDS`` (its dispatcher died mid-send)
is claimed again: a receiver may then see the transition twice, with the same id
(``X-Pulse-Delivery``, SNS FIFO deduplication). Failures are recorded and shown
(``notificationDeliveries``), never retried forever, and never hold up evaluation: the
dispatcher runs on its own thread, woken by the evaluator and by its own timer.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain import alerts
from domain.aggregate import decide_and_append
from domain.alert_states import Transition
from domain.alerts import RuleState, Target
from domain.errors import ConcurrencyError
from domain.events import Event, RecordedEvent
from domain.notifiers import DeliveryFailed, Notification, Notifier
from domain.ports import EventStore

log = logging.getLogger(__name__)

DELIVERIES_PREFIX = "alert-deliveries:"
CLAIMED = "alert_delivery_claimed"
DELIVERED = "alert_delivery_delivered"
FAILED = "alert_delivery_failed"
BACKOFF_SECONDS = (0.5, 2.0, 5.0)
STALE_CLAIM_SECONDS = 120.0
#: How often the dispatcher looks through every rule for what is owed (a restart's leftovers,
#: failed claims); what the evaluator records is delivered at once.
SCAN_SECONDS = 60.0


def deliveries_stream(rule: str) -> str:
    return DELIVERIES_PREFIX + rule


def notification_of(transition: Transition) -> Notification:
    return Notification(
        id=transition.id,
        rule=transition.rule,
        instance=transition.instance,
        kind=transition.kind,
        state=transition.to_state,
        previous_state=transition.from_state,
        value=transition.value,
        threshold=transition.threshold,
        severity=transition.severity,
        message=transition.message,
        at=transition.at,
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outcome in the delivery log."""

    transition_id: str
    rule: str
    instance: str
    target: str  # ``Target.key``
    status: str  # "delivered" or "failed"
    attempts: int
    status_codes: tuple[int | None, ...]
    error: str | None
    at: float


@dataclass
class DeliveryLog:
    """The fold of a rule's delivery stream."""

    version: int = 0
    claims: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    outcomes: dict[tuple[str, str], Delivery] = field(default_factory=dict)

    def apply(self, events: Iterable[RecordedEvent]) -> None:
        for event in events:
            props = event.properties
            pair = (props["transitionId"], props["target"])
            if event.type == CLAIMED:
                self.claims.setdefault(pair, []).append(float(props["at"]))
            elif event.type in (DELIVERED, FAILED):
                self.outcomes[pair] = Delivery(
                    props["transitionId"],
                    props["rule"],
                    props["instance"],
                    props["target"],
                    "delivered" if event.type == DELIVERED else "failed",
                    int(props["attempts"]),
                    tuple(props["statusCodes"]),
                    props.get("error"),
                    float(props["at"]),
                )
            self.version = event.version or self.version + 1

    def owed(self, pair: tuple[str, str], now: float) -> bool:
        if pair in self.outcomes:
            return False
        claims = self.claims.get(pair)
        return not claims or now - claims[-1] >= STALE_CLAIM_SECONDS


def load_log(store: EventStore, rule: str) -> DeliveryLog:
    found = DeliveryLog()
    found.apply(store.read_stream(deliveries_stream(rule)))
    return found


def _claim_id(transition_id: str, target: str, number: int) -> str:
    digest = hashlib.sha256(f"{transition_id}\x00{target}\x00{number}".encode()).hexdigest()
    return f"claim-{digest[:32]}"


class Outbox:
    """Delivers what the rules' streams owe their targets (see the module docstring)."""

    def __init__(
        self,
        events: EventStore,
        notifiers: Mapping[str, Notifier],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        backoff: tuple[float, ...] = BACKOFF_SECONDS,
    ) -> None:
        self.events = events
        self.notifiers = dict(notifiers)
        self.clock = clock
        self.sleep = sleep
        self.backoff = backoff

    def owed(self, state: RuleState) -> list[tuple[Transition, Target]]:
        """What the rule's recorded transitions still owe its targets."""
        if state.rule is None:
            return []
        log_ = load_log(self.events, state.name)
        now = self.clock()
        return [
            (transition, target)
            for transition in state.history
            if transition.notify
            for target in state.rule.targets
            if log_.owed((transition.id, target.key), now)
        ]

    def deliver_rule(self, state: RuleState) -> list[Delivery]:
        return [
            found
            for transition, target in self.owed(state)
            if (found := self.deliver(state.name, notification_of(transition), target)) is not None
        ]

    def deliver(self, rule: str, notification: Notification, target: Target) -> Delivery | None:
        """Claim, send with retries, record the outcome; None when another dispatcher has it."""
        if not self._claim(rule, notification.id, target.key):
            return None
        codes: list[int | None] = []
        error: str | None = None
        delivered = False
        notifier = self.notifiers.get(target.kind)
        for attempt in range(len(self.backoff) + 1):
            if notifier is None:
                error = f"no {target.kind} notifier is configured here"
                break
            try:
                codes.append(notifier.send(notification, target))
                delivered, error = True, None
                break
            except DeliveryFailed as exc:
                codes.append(exc.status_code)
                error = str(exc)
                if not exc.retry or attempt == len(self.backoff):
                    break
                self.sleep(self.backoff[attempt])
        outcome = Delivery(
            notification.id,
            rule,
            notification.instance,
            target.key,
            "delivered" if delivered else "failed",
            len(codes),
            tuple(codes),
            error,
            self.clock(),
        )
        self._record(outcome)
        if not delivered:
            log.warning("alert %s: delivery to %s failed after %d attempts: %s", rule, target.key, len(codes), error)
        return outcome

    def _claim(self, rule: str, transition_id: str, target: str) -> bool:
        stream = deliveries_stream(rule)
        for _ in range(5):
            current = load_log(self.events, rule)
            pair = (transition_id, target)
            if not current.owed(pair, self.clock()):
                return False
            number = len(current.claims.get(pair, []))
            event = Event(
                type=CLAIMED,
                occurred_at=datetime.now(UTC),
                properties={"transitionId": transition_id, "target": target, "at": self.clock()},
                id=_claim_id(transition_id, target, number),
            )
            try:
                self.events.append(stream, [event], current.version)
                return True
            except ConcurrencyError:
                continue
        return False

    def _record(self, outcome: Delivery) -> None:
        props: dict[str, Any] = {
            "transitionId": outcome.transition_id,
            "rule": outcome.rule,
            "instance": outcome.instance,
            "target": outcome.target,
            "attempts": outcome.attempts,
            "statusCodes": list(outcome.status_codes),
            "error": outcome.error,
            "at": outcome.at,
        }
        kind = DELIVERED if outcome.status == "delivered" else FAILED
        event = Event(type=kind, occurred_at=datetime.now(UTC), properties=props)
        decide_and_append(
            self.events,
            deliveries_stream(outcome.rule),
            lambda s: load_log(s, outcome.rule),
            lambda _: ([event], lambda version: version),
        )

    def deliveries(self, rule: str) -> list[Delivery]:
        """The rule's delivery log, oldest first."""
        return sorted(load_log(self.events, rule).outcomes.values(), key=lambda d: d.at)

    def drain(self, names: Iterable[str] | None = None) -> list[Delivery]:
        """Deliver everything owed by the named rules (every rule by default)."""
        done: list[Delivery] = []
        for name in alerts.rule_names(self.events) if names is None else names:
            done.extend(self.deliver_rule(alerts.load_rule(self.events, name)))
        return done


class Dispatcher:
    """Runs an ``Outbox`` on its own thread: woken when transitions are recorded, and every
    ``scan_seconds`` (and when it starts) to pick up what a previous process left owed."""

    def __init__(self, outbox: Outbox, scan_seconds: float = SCAN_SECONDS) -> None:
        self.outbox = outbox
        self.scan_seconds = scan_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._names: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def recorded(self, state: RuleState, transitions: list[Transition]) -> None:
        """The evaluator's hook: new transitions of ``state``'s rule were recorded."""
        if any(t.notify for t in transitions):
            with self._lock:
                self._names.add(state.name)
            self.start()
            self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pulse-alert-dispatcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        scanned: float | None = None
        while not self._stop.is_set():
            if scanned is not None:
                self._wake.wait(self.scan_seconds)
            self._wake.clear()
            with self._lock:
                names, self._names = self._names, set()
            try:
                if scanned is None or time.monotonic() - scanned >= self.scan_seconds:
                    scanned = time.monotonic()
                    self.outbox.drain()
                elif names:
                    self.outbox.drain(sorted(names))
            except Exception:
                log.exception("alert deliveries failed; retrying in %.0f s", self.scan_seconds)
