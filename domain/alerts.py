"""Alert rules: the aggregate (one stream per rule) and its validation.

A rule watches one value — a metric over a window of buckets at a resolution (with
optional dimension filters), or a gauge — and a condition on it. Its stream
``alert-rule:<name>`` holds its definition events (defined, updated, paused, resumed,
snoozed, deleted) and the transitions of its instances (``domain.alert_states``): the
fold of the stream is the rule, its instances' states and its history. Commands append
with optimistic concurrency (``domain.aggregate.decide_and_append``); the evaluator
appends transitions at the version it evaluated, so two evaluators of the same instant
cannot both record one.

Every definition change also touches the index stream ``alert-rules`` so readers learn
which rules exist, and which changed, from one stream.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from domain.aggregate import decide_and_append
from domain.errors import FieldError, NotFound, ValidationError
from domain.events import Event, RecordedEvent, utc_now
from domain.metrics import RESOLUTIONS
from domain.ports import EventStore

if TYPE_CHECKING:  # the state machine builds on rules: imported where it is used
    from domain.alert_states import InstanceState, Transition

INDEX_STREAM = "alert-rules"
RULE_STREAM_PREFIX = "alert-rule:"

RULE_DEFINED = "alert_rule_defined"
RULE_UPDATED = "alert_rule_updated"
RULE_PAUSED = "alert_rule_paused"
RULE_RESUMED = "alert_rule_resumed"
RULE_SNOOZED = "alert_rule_snoozed"
RULE_DELETED = "alert_rule_deleted"
TRANSITION = "alert_transition"
#: On the index stream: the rule named changed (defined, updated, paused, ... deleted).
RULE_CHANGED = "alert_rule_changed"

ABOVE, BELOW, OUTSIDE, INCREASE, DECREASE = "ABOVE", "BELOW", "OUTSIDE", "INCREASE", "DECREASE"
CONDITIONS = (ABOVE, BELOW, OUTSIDE, INCREASE, DECREASE)
#: What a missing value means: the condition is not met, is met, or the last value stands.
NO_DATA_OK, NO_DATA_ALERTING, NO_DATA_KEEP_LAST = "OK", "ALERTING", "KEEP_LAST"
NO_DATA_MODES = (NO_DATA_OK, NO_DATA_ALERTING, NO_DATA_KEEP_LAST)
SEVERITIES = ("INFO", "WARNING", "CRITICAL")
WEBHOOK, SNS, LOG = "WEBHOOK", "SNS", "LOG"
TARGET_KINDS = (WEBHOOK, SNS, LOG)
#: Placeholders a message template may use.
MESSAGE_FIELDS = ("rule", "state", "value", "threshold", "dimension", "severity", "condition")
DEFAULT_MESSAGE = "{rule} is {state}: value {value} ({condition} {threshold}) {dimension}"

MAX_WINDOW = 1440
MAX_SECONDS = 7 * 24 * 3600
MAX_TARGETS = 10
MAX_MESSAGE = 1000

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")


def rule_stream(name: str) -> str:
    return RULE_STREAM_PREFIX + name


@dataclass(frozen=True, slots=True)
class Target:
    """Where a rule's notifications go: a webhook (URL, signing secret), an SNS topic
    (its ARN, or the default topic when None), or the server log."""

    kind: str
    url: str | None = None
    secret: str | None = None
    topic_arn: str | None = None

    @property
    def key(self) -> str:
        """Names the target within its rule (delivery records are per transition and target)."""
        return f"{self.kind}:{self.url or self.topic_arn or ''}"

    def as_properties(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.url, "secret": self.secret, "topicArn": self.topic_arn}


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    condition: str
    threshold: float
    #: Exactly one of ``metric`` and ``gauge``.
    metric: str | None = None
    gauge: str | None = None
    #: Upper bound of the band for ``OUTSIDE`` (``threshold`` is the lower one).
    upper: float | None = None
    resolution: str = "minute"
    #: Buckets of ``resolution`` the metric is aggregated over.
    window: int = 1
    #: Whether the still-filling bucket is part of the window (else the window ends with
    #: the last complete bucket, so a bucket that has just begun does not look like a drop).
    include_partial: bool = True
    #: Dimension equality filters of the metric, or ``(("key", k),)`` for one gauge key.
    filters: tuple[tuple[str, str], ...] = ()
    #: One instance per value of this metric dimension (or, for a gauge, per key: any name).
    per_dimension: str | None = None
    for_seconds: float = 0.0
    keep_firing_for_seconds: float = 0.0
    no_data: str = NO_DATA_OK
    severity: str = "WARNING"
    message: str = DEFAULT_MESSAGE
    targets: tuple[Target, ...] = (Target(LOG),)

    def as_properties(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "condition": self.condition,
            "threshold": self.threshold,
            "upper": self.upper,
            "metric": self.metric,
            "gauge": self.gauge,
            "resolution": self.resolution,
            "window": self.window,
            "includePartial": self.include_partial,
            "filters": [{"dimension": d, "value": v} for d, v in self.filters],
            "perDimension": self.per_dimension,
            "forSeconds": self.for_seconds,
            "keepFiringForSeconds": self.keep_firing_for_seconds,
            "noData": self.no_data,
            "severity": self.severity,
            "message": self.message,
            "targets": [t.as_properties() for t in self.targets],
        }

    @classmethod
    def from_properties(cls, props: Mapping[str, Any]) -> AlertRule:
        return cls(
            name=props["name"],
            condition=props["condition"],
            threshold=float(props["threshold"]),
            upper=None if props.get("upper") is None else float(props["upper"]),
            metric=props.get("metric"),
            gauge=props.get("gauge"),
            resolution=props.get("resolution", "minute"),
            window=int(props.get("window", 1)),
            include_partial=bool(props.get("includePartial", True)),
            filters=tuple((f["dimension"], f["value"]) for f in props.get("filters") or ()),
            per_dimension=props.get("perDimension"),
            for_seconds=float(props.get("forSeconds", 0.0)),
            keep_firing_for_seconds=float(props.get("keepFiringForSeconds", 0.0)),
            no_data=props.get("noData", NO_DATA_OK),
            severity=props.get("severity", "WARNING"),
            message=props.get("message", DEFAULT_MESSAGE),
            targets=tuple(
                Target(t["kind"], t.get("url"), t.get("secret"), t.get("topicArn")) for t in props.get("targets") or ()
            ),
        )


# --- Validation --------------------------------------------------------------------------


def _number(errors: list[FieldError], path: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        errors.append(FieldError(path, f"must be a number from {low:g} to {high:g}"))


def _check_targets(errors: list[FieldError], path: str, targets: Sequence[Target]) -> None:
    if not targets:
        errors.append(FieldError(path, "needs at least one target (LOG writes to the server log)"))
    if len(targets) > MAX_TARGETS:
        errors.append(FieldError(path, f"has {len(targets)}; at most {MAX_TARGETS} are allowed"))
    for i, target in enumerate(targets):
        at = f"{path}[{i}]"
        if target.kind not in TARGET_KINDS:
            errors.append(FieldError(f"{at}.kind", f"must be one of {', '.join(TARGET_KINDS)}"))
        elif target.kind == WEBHOOK:
            if not isinstance(target.url, str) or not re.fullmatch(r"https?://[^\s]{1,2000}", target.url):
                errors.append(FieldError(f"{at}.url", "a webhook needs an http:// or https:// URL"))
            if not isinstance(target.secret, str) or not 16 <= len(target.secret) <= 256:
                errors.append(FieldError(f"{at}.secret", "a webhook needs a signing secret of 16 to 256 characters"))
        elif target.kind == SNS and target.topic_arn is not None and not _ARN.fullmatch(target.topic_arn):
            errors.append(FieldError(f"{at}.topicArn", f"{target.topic_arn!r} is not an SNS topic ARN"))
    if len({t.key for t in targets}) != len(targets):
        errors.append(FieldError(path, "must not repeat a target"))


def _check_message(errors: list[FieldError], path: str, message: Any) -> None:
    if not isinstance(message, str) or not 1 <= len(message) <= MAX_MESSAGE:
        errors.append(FieldError(path, f"must be text of 1 to {MAX_MESSAGE} characters"))
        return
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(message) if name is not None]
    except ValueError as exc:
        errors.append(FieldError(path, f"is not a valid template: {exc}"))
        return
    unknown = sorted({n for n in names if n not in MESSAGE_FIELDS})
    if unknown:
        errors.append(
            FieldError(path, f"uses unknown placeholders {', '.join(unknown)}; known: {', '.join(MESSAGE_FIELDS)}")
        )


def validate_rule(rule: AlertRule, prefix: str = "input") -> AlertRule:
    """``rule`` if it is well-formed, else ``ValidationError`` naming each bad field.
    (Whether its metric or gauge exists is checked by the service, which knows them.)"""
    errors: list[FieldError] = []
    if not isinstance(rule.name, str) or not _NAME.fullmatch(rule.name):
        errors.append(
            FieldError(
                f"{prefix}.name",
                f"{rule.name!r} is not a valid name: a letter, then up to 63 letters, digits, '_', '.' or '-'",
            )
        )
    if (rule.metric is None) == (rule.gauge is None):
        errors.append(FieldError(f"{prefix}.metric", "give exactly one of metric and gauge"))
    if rule.condition not in CONDITIONS:
        errors.append(FieldError(f"{prefix}.condition", f"must be one of {', '.join(CONDITIONS)}"))
    _number(errors, f"{prefix}.threshold", rule.threshold, -1e300, 1e300)
    if rule.condition == OUTSIDE:
        if rule.upper is None:
            errors.append(FieldError(f"{prefix}.upper", "OUTSIDE needs the band's upper bound"))
        elif rule.upper < rule.threshold:
            errors.append(FieldError(f"{prefix}.upper", "must not be below threshold (the band's lower bound)"))
    elif rule.upper is not None:
        errors.append(FieldError(f"{prefix}.upper", "only OUTSIDE takes an upper bound"))
    if rule.condition in (INCREASE, DECREASE):
        if rule.gauge is not None:
            errors.append(FieldError(f"{prefix}.condition", f"{rule.condition} compares periods: it needs a metric"))
        if isinstance(rule.threshold, int | float) and rule.threshold < 0:
            errors.append(FieldError(f"{prefix}.threshold", "a relative change is a percentage of 0 or more"))
    if rule.resolution not in RESOLUTIONS:
        errors.append(FieldError(f"{prefix}.resolution", f"must be one of {', '.join(RESOLUTIONS)}"))
    if isinstance(rule.window, bool) or not isinstance(rule.window, int) or not 1 <= rule.window <= MAX_WINDOW:
        errors.append(FieldError(f"{prefix}.window", f"must be a whole number of buckets from 1 to {MAX_WINDOW}"))
    _number(errors, f"{prefix}.for", rule.for_seconds, 0, MAX_SECONDS)
    _number(errors, f"{prefix}.keepFiringFor", rule.keep_firing_for_seconds, 0, MAX_SECONDS)
    if rule.no_data not in NO_DATA_MODES:
        errors.append(FieldError(f"{prefix}.noData", f"must be one of {', '.join(NO_DATA_MODES)}"))
    if rule.severity not in SEVERITIES:
        errors.append(FieldError(f"{prefix}.severity", f"must be one of {', '.join(SEVERITIES)}"))
    if rule.per_dimension is not None and (not isinstance(rule.per_dimension, str) or not rule.per_dimension):
        errors.append(FieldError(f"{prefix}.perDimension", "must name a dimension"))
    for i, (dimension, value) in enumerate(rule.filters):
        if not isinstance(dimension, str) or not dimension or not isinstance(value, str):
            errors.append(FieldError(f"{prefix}.filters[{i}]", "a filter is a dimension name and a text value"))
    _check_message(errors, f"{prefix}.message", rule.message)
    _check_targets(errors, f"{prefix}.targets", rule.targets)
    if errors:
        raise ValidationError(errors)
    return rule


# --- The aggregate -----------------------------------------------------------------------


@dataclass
class RuleState:
    """The fold of a rule's stream. ``instances`` maps an instance key (a dimension value,
    ``""`` for a rule with one instance) to its state; ``history`` is every transition."""

    name: str
    version: int = 0
    rule: AlertRule | None = None
    paused: bool = False
    snoozed_until: float | None = None
    deleted: bool = False
    instances: dict[str, InstanceState] = field(default_factory=dict)
    history: list[Transition] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        return self.rule is not None and not self.deleted

    def apply(self, events: Iterable[RecordedEvent]) -> None:
        from domain.alert_states import InstanceState, Transition

        for recorded in events:
            props = recorded.properties
            kind = recorded.type
            if kind in (RULE_DEFINED, RULE_UPDATED):
                if kind == RULE_DEFINED:
                    self.instances, self.paused, self.snoozed_until = {}, False, None
                self.rule = AlertRule.from_properties(props["rule"])
                self.deleted = False
            elif kind == RULE_PAUSED:
                self.paused = True
            elif kind == RULE_RESUMED:
                self.paused = False
            elif kind == RULE_SNOOZED:
                self.snoozed_until = props.get("until")
            elif kind == RULE_DELETED:
                self.deleted = True
            elif kind == TRANSITION:
                transition = Transition.from_properties(props)
                self.instances[transition.instance] = InstanceState.after(transition)
                self.history.append(transition)
            self.version = recorded.version or self.version + 1

    def snoozed(self, now: float) -> bool:
        return self.snoozed_until is not None and now < self.snoozed_until


def load_rule(store: EventStore, name: str) -> RuleState:
    state = RuleState(name)
    state.apply(store.read_stream(rule_stream(name)))
    return state


def rule_names(store: EventStore) -> list[str]:
    """Every name the index stream has seen (deleted rules included: load them to know)."""
    return sorted({e.properties["name"] for e in store.read_stream(INDEX_STREAM)})


def indexed_names(store: EventStore, after_version: int | None = None) -> tuple[list[str], int]:
    """The names the index stream mentions after ``after_version`` (each once, in order), and
    the index's version."""
    events = store.read_stream(INDEX_STREAM, after_version=after_version)
    names = list(dict.fromkeys(e.properties["name"] for e in events))
    return names, (events[-1].version or (after_version or 0) + len(events)) if events else (after_version or 0)


def _event(kind: str, props: dict[str, Any]) -> Event:
    return Event(type=kind, occurred_at=utc_now(), properties=props)


def _touch_index(store: EventStore, name: str) -> None:
    """Tell index readers ``name`` changed; retried on a race (the index only grows)."""

    def decide(state: _IndexVersion):
        return [_event(RULE_CHANGED, {"name": name})], lambda v: v

    decide_and_append(store, INDEX_STREAM, _index_version, decide)


@dataclass
class _IndexVersion:
    version: int


def _index_version(store: EventStore) -> _IndexVersion:
    events = store.read_stream(INDEX_STREAM)
    return _IndexVersion(len(events))


def _command(store: EventStore, name: str, decide_events: Callable[[RuleState], list[Event]]) -> RuleState:
    """Append what ``decide_events(state)`` returns to the rule's stream (it raises to
    refuse), then touch the index; returns the rule as it now is."""
    decide_and_append(
        store, rule_stream(name), lambda s: load_rule(s, name), lambda state: (decide_events(state), lambda v: v)
    )
    _touch_index(store, name)
    return load_rule(store, name)


def _existing(state: RuleState) -> AlertRule:
    if not state.exists or state.rule is None:
        raise NotFound(f"no alert rule named {state.name!r}")
    return state.rule


def define_rule(store: EventStore, rule: AlertRule) -> RuleState:
    validate_rule(rule)

    def decide(state: RuleState):
        if state.exists:
            raise ValidationError(
                [FieldError("input.name", f"an alert rule named {rule.name!r} exists; updateAlertRule changes it")]
            )
        return [_event(RULE_DEFINED, {"rule": rule.as_properties()})]

    return _command(store, rule.name, decide)


def update_rule(store: EventStore, rule: AlertRule) -> RuleState:
    """Replace a rule's definition; its instances keep their states."""
    validate_rule(rule)

    def decide(state: RuleState):
        _existing(state)
        return [_event(RULE_UPDATED, {"rule": rule.as_properties()})]

    return _command(store, rule.name, decide)


def pause_rule(store: EventStore, name: str, paused: bool) -> RuleState:
    """Pause (no evaluation, states frozen) or resume a rule."""

    def decide(state: RuleState):
        _existing(state)
        return [_event(RULE_PAUSED if paused else RULE_RESUMED, {})]

    return _command(store, name, decide)


def snooze_rule(store: EventStore, name: str, until: float | None) -> RuleState:
    """Evaluate and record as usual, but notify nothing before ``until`` (None: unsnooze)."""

    def decide(state: RuleState):
        _existing(state)
        return [_event(RULE_SNOOZED, {"until": until})]

    return _command(store, name, decide)


def delete_rule(store: EventStore, name: str) -> RuleState:
    def decide(state: RuleState):
        _existing(state)
        return [_event(RULE_DELETED, {})]

    return _command(store, name, decide)
