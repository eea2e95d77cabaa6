"""The alert-rule aggregate: its own stream, validated fields, optimistic concurrency."""

from __future__ import annotations

import pytest

from domain import alerts
from domain.alert_states import FIRING, InstanceState
from domain.alerts import AlertRule, Target
from domain.errors import ConcurrencyError, NotFound, ValidationError
from storage.memory import MemoryEventStore

HOOK = Target("WEBHOOK", url="http://localhost:9/hook", secret="s" * 16)


def low_stock(**changes) -> AlertRule:
    base = {"name": "low-stock", "condition": "BELOW", "threshold": 5.0, "gauge": "stock", "targets": (HOOK,)}
    return AlertRule(**{**base, **changes})


def fields(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {e.field for e in exc.value.errors}


def test_define_then_read_back_from_its_own_stream():
    store = MemoryEventStore()
    state = alerts.define_rule(store, low_stock(per_dimension="product", for_seconds=30))
    assert state.exists and state.version == 1
    again = alerts.load_rule(store, "low-stock")
    assert again.rule == low_stock(per_dimension="product", for_seconds=30)
    assert [e.type for e in store.read_stream("alert-rule:low-stock")] == [alerts.RULE_DEFINED]
    assert alerts.rule_names(store) == ["low-stock"]


def test_a_second_define_of_a_name_is_refused_naming_the_field():
    store = MemoryEventStore()
    alerts.define_rule(store, low_stock())
    with pytest.raises(ValidationError) as exc:
        alerts.define_rule(store, low_stock(threshold=1))
    assert fields(exc) == {"input.name"}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "1bad"}, "input.name"),
        ({"condition": "SIDEWAYS"}, "input.condition"),
        ({"gauge": None}, "input.metric"),
        ({"metric": "sales"}, "input.metric"),
        ({"condition": "OUTSIDE"}, "input.upper"),
        ({"condition": "OUTSIDE", "upper": 1.0}, "input.upper"),
        ({"condition": "INCREASE"}, "input.condition"),
        ({"resolution": "week"}, "input.resolution"),
        ({"window": 0}, "input.window"),
        ({"for_seconds": -1}, "input.for"),
        ({"keep_firing_for_seconds": 10**9}, "input.keepFiringFor"),
        ({"no_data": "MAYBE"}, "input.noData"),
        ({"severity": "LOUD"}, "input.severity"),
        ({"message": "{rule} at {nope}"}, "input.message"),
        ({"targets": ()}, "input.targets"),
        ({"targets": (Target("WEBHOOK", url="ftp://x", secret="s" * 16),)}, "input.targets[0].url"),
        ({"targets": (Target("WEBHOOK", url="http://x/h", secret="short"),)}, "input.targets[0].secret"),
        ({"targets": (Target("SNS", topic_arn="not-an-arn"),)}, "input.targets[0].topicArn"),
        ({"targets": (Target("PIGEON"),)}, "input.targets[0].kind"),
    ],
)
def test_bad_fields_are_named_and_nothing_is_written(changes, field):
    store = MemoryEventStore()
    with pytest.raises(ValidationError) as exc:
        alerts.define_rule(store, low_stock(**changes))
    assert field in fields(exc)
    assert store.read_stream("alert-rule:" + str(changes.get("name", "low-stock"))) == []
    assert alerts.rule_names(store) == []


def test_update_pause_snooze_and_delete():
    store = MemoryEventStore()
    alerts.define_rule(store, low_stock())
    assert alerts.update_rule(store, low_stock(threshold=2)).rule.threshold == 2
    assert alerts.pause_rule(store, "low-stock", True).paused
    assert not alerts.pause_rule(store, "low-stock", False).paused
    snoozed = alerts.snooze_rule(store, "low-stock", 2_000.0)
    assert snoozed.snoozed(1_999.0) and not snoozed.snoozed(2_000.0)
    assert not alerts.delete_rule(store, "low-stock").exists
    with pytest.raises(NotFound):
        alerts.pause_rule(store, "low-stock", True)
    # A deleted name can be defined again, starting afresh.
    assert alerts.define_rule(store, low_stock()).instances == {}


def test_unknown_rules_are_not_found():
    with pytest.raises(NotFound):
        alerts.update_rule(MemoryEventStore(), low_stock())


def test_a_command_decided_on_a_stale_version_is_decided_again():
    store = MemoryEventStore()
    stale = alerts.define_rule(store, low_stock())
    alerts.pause_rule(store, "low-stock", True)
    with pytest.raises(ConcurrencyError):
        store.append(
            alerts.rule_stream("low-stock"), [alerts._event(alerts.RULE_RESUMED, {})], expected_version=stale.version
        )
    # The command itself reloads and decides again: the pause stands, then the resume applies.
    assert not alerts.pause_rule(store, "low-stock", False).paused
    assert alerts.load_rule(store, "low-stock").version == 3


def test_transitions_fold_into_instance_states_and_history():
    from domain.alert_states import Observation, evaluate

    store = MemoryEventStore()
    state = alerts.define_rule(store, low_stock())
    assert state.rule is not None
    _instance, transition = evaluate(state.rule, None, "", Observation(3), 1_000.0, state.version)
    assert transition is not None
    store.append(
        alerts.rule_stream("low-stock"),
        [alerts._event(alerts.TRANSITION, transition.as_properties())],
        expected_version=state.version,
    )
    folded = alerts.load_rule(store, "low-stock")
    assert folded.instances == {"": InstanceState(FIRING, 1_000.0, 3, None)}
    assert folded.history == [transition]
