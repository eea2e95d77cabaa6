"""The dispatcher delivers on its own thread: evaluation goes on while a target fails, and
what cannot be delivered is recorded as failed, visible in the delivery log."""

from __future__ import annotations

import threading

from domain import alerts
from domain.alert_states import FIRING
from domain.alerts import AlertRule, Target
from domain.notifiers import DeliveryFailed, Notification
from services.alert_delivery import Dispatcher, Outbox
from services.engine import ProjectionEngine
from tests.alerts.conftest import AlertRig
from tests.e2e.harness import wait_until


class Stuck:
    """A target that hangs until released, then refuses."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def send(self, notification: Notification, target: Target) -> int | None:
        self.calls += 1
        self.release.wait(30)
        raise DeliveryFailed("refused", status_code=500)


def test_a_hanging_target_neither_blocks_evaluation_nor_is_dropped(rig: AlertRig) -> None:
    rule = AlertRule(name="low-stock", condition="BELOW", threshold=5, gauge="stock", per_dimension="product")
    alerts.define_rule(rig.pulse.store, rule)
    stuck = Stuck()
    outbox = Outbox(rig.pulse.store, {"LOG": stuck}, clock=rig.clock.now, sleep=lambda _: None)
    dispatcher = Dispatcher(outbox)
    counters, handler = rig.handlers()
    handler.recorded = dispatcher.recorded
    handler.change_seconds = 0
    tail = rig.tail(ProjectionEngine([counters, handler]))
    rig.stock(mug=3)
    tail.catch_up()
    wait_until(lambda: stuck.calls >= 1, "the dispatcher to try the target")
    # The target hangs; evaluation goes on (still on its first attempt when this returns).
    rig.stock(beans=1)
    tail.catch_up()
    assert stuck.calls == 1
    states = {k: s.state for k, s in alerts.load_rule(rig.pulse.store, "low-stock").instances.items()}
    assert states == {"mug": FIRING, "beans": FIRING}
    stuck.release.set()
    failed = wait_until(
        lambda: [d for d in outbox.deliveries("low-stock") if d.instance == "beans"], "the failure to be logged"
    )
    assert failed[0].status == "failed" and failed[0].attempts == 4 and failed[0].status_codes == (500,) * 4
    dispatcher.stop()
