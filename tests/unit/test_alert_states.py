"""The alert state machine, pure: what a user relies on when a value crosses a threshold."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.alert_states import (
    ERROR,
    FIRING,
    NO_DATA,
    NORMAL,
    PENDING,
    RECOVERING,
    InstanceState,
    Observation,
    Transition,
    evaluate,
    evaluate_rule,
    transition_id,
)
from domain.alerts import AlertRule

T0 = 1_800_000_000.0  # any instant: the machine only measures durations from it


def rule(**changes) -> AlertRule:
    base = {"name": "low-stock", "condition": "BELOW", "threshold": 5.0, "gauge": "stock"}
    return AlertRule(**{**base, **changes})


def run(r: AlertRule, samples: list[tuple[float, float | None]]) -> tuple[InstanceState, list[Transition]]:
    """Feed ``(seconds after T0, value)`` samples to one instance; the transitions made."""
    state: InstanceState | None = None
    transitions: list[Transition] = []
    for version, (offset, value) in enumerate(samples):
        state, transition = evaluate(r, state, "", Observation(value), T0 + offset, version)
        if transition is not None:
            transitions.append(transition)
    assert state is not None
    return state, transitions


def path(transitions: list[Transition]) -> list[str]:
    return [t.to_state for t in transitions]


def test_without_for_a_crossing_fires_at_once_and_is_notified():
    state, transitions = run(rule(), [(0, 10), (1, 3)])
    assert state.state == FIRING
    assert path(transitions) == [FIRING]
    assert transitions[0].notify and transitions[0].kind == "firing"
    assert transitions[0].value == 3


def test_for_holds_a_blip_back():
    r = rule(for_seconds=60)
    state, transitions = run(r, [(0, 3), (30, 10), (90, 10)])
    assert state.state == NORMAL
    assert path(transitions) == [PENDING, NORMAL]
    assert not any(t.notify for t in transitions), "a blip shorter than `for` must not page anyone"


def test_for_fires_once_the_condition_held_long_enough():
    r = rule(for_seconds=60)
    state, transitions = run(r, [(0, 3), (30, 2), (59, 2), (60, 2)])
    assert path(transitions) == [PENDING, FIRING]
    assert transitions[-1].notify
    assert state.state == FIRING


def test_keep_firing_for_stops_flapping():
    r = rule(keep_firing_for_seconds=120)
    # Oscillating around the threshold: fires once, never announces a resolution mid-flap.
    samples = [(0, 3), (10, 6), (20, 4), (30, 7), (40, 3), (50, 8)]
    state, transitions = run(r, samples)
    notified = [t for t in transitions if t.notify]
    assert [t.kind for t in notified] == ["firing"]
    assert state.state == RECOVERING
    # Quiet for keepFiringFor: resolved, announced once.
    state, more = evaluate(r, state, "", Observation(9), T0 + 50 + 120, 99)
    assert state.state == NORMAL
    assert more is not None and more.notify and more.kind == "resolved"


def test_without_keep_firing_for_every_flap_is_announced():
    _, transitions = run(rule(), [(0, 3), (10, 6), (20, 4), (30, 7)])
    assert [t.kind for t in transitions if t.notify] == ["firing", "resolved", "firing", "resolved"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("OK", [FIRING, NO_DATA]), ("ALERTING", [FIRING]), ("KEEP_LAST", [FIRING])],
)
def test_no_data_behaves_as_configured(mode, expected):
    state, transitions = run(rule(no_data=mode), [(0, 3), (10, None), (20, None)])
    assert path(transitions) == expected
    assert state.state == expected[-1]


def test_no_data_ok_resolves_a_firing_instance_and_keep_last_keeps_the_last_value():
    _, transitions = run(rule(no_data="OK"), [(0, 3), (10, None)])
    assert transitions[-1].kind == "resolved" and transitions[-1].notify
    state, _ = run(rule(no_data="KEEP_LAST"), [(0, 10), (10, None), (20, None)])
    assert state.state == NORMAL and state.value == 10


def test_no_data_alerting_fires_without_any_value():
    _state, transitions = run(rule(no_data="ALERTING", for_seconds=30), [(0, None), (30, None)])
    assert path(transitions) == [PENDING, FIRING]


def test_an_error_is_its_own_state_and_is_not_announced():
    r = rule()
    state, transition = evaluate(r, None, "", Observation(None, error="metric deleted"), T0, 0)
    assert state.state == ERROR and transition is not None and not transition.notify
    state, transition = evaluate(r, state, "", Observation(3), T0 + 1, 1)
    assert state.state == FIRING and transition is not None and transition.notify


def test_snoozed_transitions_are_recorded_but_not_announced():
    state, transition = evaluate(rule(), None, "", Observation(3), T0, 0, snoozed=True)
    assert state.state == FIRING and transition is not None and not transition.notify


def test_per_dimension_instances_fire_and_resolve_independently():
    r = rule(per_dimension="product")
    states, transitions = evaluate_rule(r, {}, {"apple": Observation(3), "pear": Observation(9)}, T0, 0)
    assert {k: s.state for k, s in states.items()} == {"apple": FIRING, "pear": NORMAL}
    assert [(t.instance, t.to_state) for t in transitions] == [("apple", FIRING)]
    states, transitions = evaluate_rule(r, states, {"apple": Observation(4), "pear": Observation(2)}, T0 + 1, 1)
    assert [(t.instance, t.kind) for t in transitions] == [("pear", "firing")]
    states, transitions = evaluate_rule(r, states, {"apple": Observation(8), "pear": Observation(1)}, T0 + 2, 2)
    assert [(t.instance, t.kind) for t in transitions] == [("apple", "resolved")]
    assert {k: s.state for k, s in states.items()} == {"apple": NORMAL, "pear": FIRING}
    assert "product=apple" in transitions[0].message


def test_relative_increase_compares_with_the_previous_period():
    r = AlertRule(name="spike", condition="INCREASE", threshold=50.0, metric="sales")
    _, quiet = evaluate(r, None, "", Observation(140, previous=100), T0, 0)
    assert quiet is None
    _state, spike = evaluate(r, None, "", Observation(150, previous=100), T0, 0)
    assert spike is not None and spike.to_state == FIRING
    r = AlertRule(name="drop", condition="DECREASE", threshold=50.0, metric="sales")
    _, drop = evaluate(r, None, "", Observation(40, previous=100), T0, 0)
    assert drop is not None and drop.to_state == FIRING


def test_outside_a_band():
    r = AlertRule(name="band", condition="OUTSIDE", threshold=10, upper=20, gauge="temp")
    assert evaluate(r, None, "", Observation(15), T0, 0)[0].state == NORMAL
    assert evaluate(r, None, "", Observation(25), T0, 0)[0].state == FIRING
    assert evaluate(r, None, "", Observation(5), T0, 0)[0].state == FIRING


def test_a_transition_id_names_the_decision_so_deciding_twice_gives_one_id():
    r = rule()
    _, first = evaluate(r, None, "", Observation(3), T0, 7)
    _, again = evaluate(r, None, "", Observation(2), T0 + 5, 7)
    assert first is not None and again is not None and first.id == again.id == transition_id("low-stock", "", 7, FIRING)
    _, later = evaluate(r, None, "", Observation(3), T0, 8)
    assert later is not None and later.id != first.id


values = st.one_of(st.none(), st.floats(min_value=-100, max_value=100, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(
    samples=st.lists(st.tuples(st.floats(min_value=0, max_value=300), values), min_size=1, max_size=40),
    for_seconds=st.sampled_from([0.0, 30.0, 120.0]),
    keep=st.sampled_from([0.0, 30.0, 120.0]),
    mode=st.sampled_from(["OK", "ALERTING", "KEEP_LAST"]),
)
def test_announcements_alternate_firing_then_resolved(samples, for_seconds, keep, mode):
    """Whatever the values: announcements alternate firing, resolved, firing...; FIRING is
    only entered from PENDING once `for` has elapsed (or at once when `for` is 0)."""
    r = rule(for_seconds=for_seconds, keep_firing_for_seconds=keep, no_data=mode)
    state: InstanceState | None = None
    now = T0
    kinds: list[str] = []
    for version, (step, value) in enumerate(samples):
        now += step
        before = state
        state, transition = evaluate(r, state, "", Observation(value), now, version)
        if transition is None:
            continue
        assert transition.from_state == (before.state if before else NORMAL)
        if transition.to_state == FIRING and transition.from_state == PENDING:
            assert before is not None and now - before.since >= for_seconds
        if transition.to_state == FIRING and transition.from_state in (NORMAL, NO_DATA, ERROR):
            assert for_seconds == 0
        if transition.notify:
            kinds.append(transition.kind)
    assert all(kind == ("firing" if i % 2 == 0 else "resolved") for i, kind in enumerate(kinds))


def test_data_never_seen_is_not_recorded_as_data_gone_missing():
    _, transitions = evaluate_rule(rule(), {}, {"": Observation(None)}, T0, 0)
    assert transitions == []
    _, transitions = evaluate_rule(rule(no_data="ALERTING"), {}, {"": Observation(None)}, T0, 0)
    assert [t.to_state for t in transitions] == [FIRING]
