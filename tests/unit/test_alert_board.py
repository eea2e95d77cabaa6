"""What an ALERTS widget shows: instances FIRING or RECOVERING (not PENDING, not resolved),
most severe first, paused rules left out, filtered by severity and rule; and the rule states'
version, which grows with every transition recorded (the widget's live token)."""

from __future__ import annotations

from domain import alerts as rules
from domain.alert_states import Transition
from domain.alerts import AlertRule
from services.alert_board import RuleStates, alerting
from services.alert_evaluation import transition_event
from storage.memory import MemoryEventStore

AT = 1_000_000.0


def define(store: MemoryEventStore, name: str, severity: str) -> None:
    rule = AlertRule(
        name=name, condition="BELOW", threshold=5, gauge="stock", per_dimension="product", severity=severity
    )
    rules.define_rule(store, rule)


def record(
    store: MemoryEventStore, name: str, instance: str, to_state: str, at: float, from_state: str = "NORMAL"
) -> None:
    state = rules.load_rule(store, name)
    transition = Transition(
        id=f"tr-{name}-{instance}-{state.version}",
        rule=name,
        instance=instance,
        from_state=from_state,
        to_state=to_state,
        at=at,
        value=2.0,
        previous=None,
        threshold=5.0,
        notify=False,
        message=f"{name} {instance} is {to_state}",
        severity=state.rule.severity,
    )
    store.append(rules.rule_stream(name), [transition_event(transition)], state.version)


def test_firing_and_recovering_instances_most_severe_first() -> None:
    store = MemoryEventStore()
    define(store, "low-stock", "WARNING")
    define(store, "empty-shelf", "CRITICAL")
    define(store, "paused-rule", "CRITICAL")
    record(store, "low-stock", "mug", "FIRING", AT)
    record(store, "low-stock", "cup", "FIRING", AT - 60)
    record(store, "low-stock", "cup", "RECOVERING", AT + 1, "FIRING")
    record(store, "low-stock", "tea", "PENDING", AT)
    record(store, "low-stock", "jar", "FIRING", AT)
    record(store, "low-stock", "jar", "NORMAL", AT + 2, "FIRING")
    record(store, "empty-shelf", "beans", "FIRING", AT + 5)
    record(store, "paused-rule", "beans", "FIRING", AT)
    rules.pause_rule(store, "paused-rule", True)

    states = RuleStates(store, refresh_seconds=0).all()
    shown = [(a.rule, a.instance, a.state, a.since) for a in alerting(states)]
    assert shown == [
        ("empty-shelf", "beans", "FIRING", AT + 5),
        ("low-stock", "mug", "FIRING", AT),
        ("low-stock", "cup", "RECOVERING", AT + 1),
    ]
    assert alerting(states)[0].message == "empty-shelf beans is FIRING"
    assert [a.rule for a in alerting(states, severities=("WARNING",))] == ["low-stock", "low-stock"]
    assert [a.instance for a in alerting(states, names=("empty-shelf",))] == ["beans"]
    assert alerting(states, severities=("INFO",)) == []


def test_the_version_grows_with_each_transition_and_new_rule() -> None:
    store = MemoryEventStore()
    board = RuleStates(store, refresh_seconds=0)
    empty = board.version()
    define(store, "low-stock", "WARNING")
    defined = board.version()
    record(store, "low-stock", "mug", "FIRING", AT)
    fired = board.version()
    assert empty < defined < fired
    assert [a.instance for a in alerting(board.all())] == ["mug"]
    assert board.version() == fired  # nothing new: the same token, no push


def test_a_snapshot_is_not_changed_by_a_later_catch_up() -> None:
    store = MemoryEventStore()
    board = RuleStates(store, refresh_seconds=0)
    define(store, "low-stock", "WARNING")
    before = board.all()
    record(store, "low-stock", "mug", "FIRING", AT)
    board.all()
    assert before[0].instances == {}


def test_a_deleted_rule_leaves_the_board_and_moves_the_version_once() -> None:
    store = MemoryEventStore()
    board = RuleStates(store, refresh_seconds=0)
    define(store, "low-stock", "WARNING")
    record(store, "low-stock", "mug", "FIRING", AT)
    assert [a.instance for a in alerting(board.all())] == ["mug"]
    before = board.version()

    rules.delete_rule(store, "low-stock")
    deleted = board.version()
    assert deleted > before and board.all() == [] and alerting(board.all()) == []
    assert board.version() == deleted  # nothing new since: the same token
    assert board.get("low-stock") is None and board.get("never-defined") is None
