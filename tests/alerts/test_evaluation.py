"""Alert evaluation on the engine: transitions recorded on the rule's stream when a
watched value changes or time passes, and announced exactly once."""

from __future__ import annotations

import threading

from bootstrap import bootstrap
from domain import alerts
from domain import metrics as defs
from domain.alert_states import FIRING, NORMAL, PENDING
from domain.alerts import AlertRule
from domain.clock import now_utc
from domain.events import Event
from domain.settings import Settings
from services.engine import ProjectionEngine
from tests.alerts.conftest import STOCK, AlertRig


def low_stock(**changes) -> AlertRule:
    base = {"name": "low-stock", "condition": "BELOW", "threshold": 5.0, "gauge": "stock", "per_dimension": "product"}
    return AlertRule(**{**base, **changes})


def states(rig: AlertRig, name: str = "low-stock") -> dict[str, str]:
    return {key: s.state for key, s in alerts.load_rule(rig.pulse.store, name).instances.items()}


def test_a_crossing_event_fires_its_instance_and_is_announced_once(rig: AlertRig):
    alerts.define_rule(rig.pulse.store, low_stock())
    tail = rig.tail()
    rig.stock(mug=10, beans=12)
    tail.catch_up()
    assert states(rig) == {}, "healthy instances have nothing to record"
    rig.stock(mug=3)
    tail.catch_up()
    assert states(rig) == {"mug": FIRING}
    delivered = rig.outbox().drain()
    assert [(d.instance, d.status) for d in delivered] == [("mug", "delivered")]
    assert [(n.kind, n.instance, n.value) for n in rig.notifier] == [("firing", "mug", 3.0)]
    assert rig.outbox().drain() == [], "a delivered transition is not owed again"


def test_per_dimension_instances_fire_and_resolve_independently(rig: AlertRig):
    alerts.define_rule(rig.pulse.store, low_stock())
    tail = rig.tail()
    rig.stock(mug=3, beans=12)
    tail.catch_up()
    rig.stock(beans=1)
    tail.catch_up()
    rig.stock(mug=20)
    tail.catch_up()
    assert states(rig) == {"mug": NORMAL, "beans": FIRING}
    rig.outbox().drain()
    assert [(n.instance, n.kind) for n in rig.notifier] == [("mug", "firing"), ("beans", "firing"), ("mug", "resolved")]


def test_a_batch_delivered_twice_records_and_announces_once(rig: AlertRig):
    alerts.define_rule(rig.pulse.store, low_stock())
    rig.stock(mug=3)
    batch = rig.next_batch(0)
    for engine in (rig.engine(), rig.engine()):  # the second: a restarted worker
        engine.prepare()
        engine.handle(batch)
        engine.handle(batch)
    history = alerts.load_rule(rig.pulse.store, "low-stock").history
    assert [(t.instance, t.to_state) for t in history] == [("mug", FIRING)]
    rig.outbox().drain()
    rig.outbox().drain()
    assert len(rig.notifier.sent) == 1


def test_a_worker_killed_between_the_counters_and_the_alerts_announces_once(rig: AlertRig):
    alerts.define_rule(rig.pulse.store, low_stock())
    rig.stock(mug=3)
    counters, _ = rig.handlers()
    killed = ProjectionEngine([counters])
    killed.prepare()
    killed.handle(rig.next_batch(0))  # killed before the alerts ran
    assert states(rig) == {}
    restarted = rig.engine()
    rig.tail(restarted).catch_up()
    restarted.maintain(rig.clock.now())  # the first tick evaluates what the kill missed
    restarted.maintain(rig.clock.now())
    assert states(rig) == {"mug": FIRING}
    rig.outbox().drain()
    assert [(n.instance, n.kind) for n in rig.notifier] == [("mug", "firing")]


def test_two_evaluators_racing_record_one_transition(rig: AlertRig):
    alerts.define_rule(rig.pulse.store, low_stock())
    rig.stock(mug=3)
    rig.tail().catch_up()
    first, second = rig.handlers()[1], rig.handlers()[1]
    first.book.refresh()
    second.book.refresh()  # both read the rule at the same version
    now = rig.clock.now()
    assert len(first.evaluate(["low-stock"], now) + second.evaluate(["low-stock"], now)) <= 1
    assert len(alerts.load_rule(rig.pulse.store, "low-stock").history) == 1


def test_a_replay_batch_evaluates_and_announces_nothing(rig: AlertRig):
    alerts.define_rule(rig.pulse.store, low_stock())
    rig.stock(mug=3)
    counters, handler = rig.handlers()
    engine = ProjectionEngine([counters, handler])
    engine.prepare()
    engine.handle(rig.next_batch(0, replay=True))
    assert alerts.load_rule(rig.pulse.store, "low-stock").history == []
    assert rig.outbox().drain() == []


def test_for_is_measured_by_the_clock_tick(rig: AlertRig):
    alerts.define_rule(rig.pulse.store, low_stock(for_seconds=60))
    engine = rig.engine()
    rig.stock(mug=3)
    rig.tail(engine).catch_up()
    assert states(rig) == {"mug": PENDING}
    rig.clock.advance(30)
    engine.maintain(rig.clock.now())
    assert states(rig) == {"mug": PENDING}
    rig.clock.advance(30)
    engine.maintain(rig.clock.now())
    assert states(rig) == {"mug": FIRING}


def test_paused_rules_are_not_evaluated_and_snoozed_ones_not_announced(rig: AlertRig):
    alerts.define_rule(rig.pulse.store, low_stock())
    alerts.define_rule(rig.pulse.store, low_stock(name="quiet"))
    alerts.pause_rule(rig.pulse.store, "low-stock", True)
    alerts.snooze_rule(rig.pulse.store, "quiet", rig.clock.now() + 3600)
    rig.stock(mug=3)
    rig.tail().catch_up()
    assert states(rig) == {}
    assert states(rig, "quiet") == {"mug": FIRING}
    assert rig.outbox().drain() == []


def test_a_metric_window_rule_fires_on_a_sales_spike(rig: AlertRig):
    spike = AlertRule(name="spike", condition="ABOVE", threshold=100, metric="sales", resolution="minute", window=5)
    alerts.define_rule(rig.pulse.store, spike)
    engine = rig.engine()
    rig.post(("sale", {"amount": 60, "product": "mug"}))
    rig.tail(engine).catch_up()
    assert states(rig, "spike") == {"": NORMAL} or states(rig, "spike") == {}
    rig.post(("sale", {"amount": 60, "product": "beans"}))
    rig.tail(engine).catch_up()
    assert states(rig, "spike") == {"": FIRING}
    # The window slides past the sales: the tick resolves it.
    rig.clock.advance(6 * 60)
    engine.maintain(rig.clock.now())
    assert states(rig, "spike") == {"": NORMAL}
    rig.outbox().drain()
    assert [n.kind for n in rig.notifier] == ["firing", "resolved"]


def dispatchers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "pulse-alert-dispatcher" and t.is_alive()}


def test_closing_pulse_stops_the_delivery_thread_before_the_stores_close(tmp_path, clock):
    """The worker's alerts handler delivers on its own thread; ``Pulse.close`` stops it first,
    so it never writes to a store being closed under it (that crashed SQLite's C code)."""
    pulse = bootstrap(Settings(store="sqlite", db=str(tmp_path / "pulse.db")), clock=clock, create=True)
    defs.define_gauge(pulse.store, STOCK)
    alerts.define_rule(pulse.store, low_stock())
    reading = Event(type="stock_level", occurred_at=now_utc(clock), properties={"product": "mug", "level": 1})
    pulse.store.ingest([reading])
    before = dispatchers()
    pulse.worker().catch_up()
    assert {key: s.state for key, s in alerts.load_rule(pulse.store, "low-stock").instances.items()} == {"mug": FIRING}
    started = dispatchers() - before
    assert started, "the worker's alerts handler delivers on its own thread"
    pulse.close()
    assert not any(thread.is_alive() for thread in started)
