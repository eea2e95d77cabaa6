"""A rig for alert evaluation on a real backend (SQLite, and the in-memory fake): the
backend's counters handler and the alerts handler on one engine, a frozen clock, and an
outbox whose notifiers are in-memory fakes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from bootstrap import Pulse, WorkerOptions, bootstrap, drop_tables
from bootstrap.alerts import alerts_handler
from domain import metrics as defs
from domain.clock import FrozenClock, now_utc
from domain.events import Event
from domain.settings import Settings
from services.alert_delivery import Outbox
from services.alert_evaluation import AlertsHandler
from services.engine import FeedBatch, ProjectionEngine, ProjectionHandler
from storage.notify_memory import MemoryNotifier
from workers.log_tail import LogTail

STOCK = defs.validate_gauge("stock", "stock_level", "level", "product")
SALES = defs.validate_metric("sales", "sale", "sum", "amount", ["product"])


@dataclass
class AlertRig:
    pulse: Pulse
    clock: FrozenClock
    notifier: MemoryNotifier

    def handlers(self) -> tuple[ProjectionHandler, AlertsHandler]:
        """The counters handler and an alerts handler, fresh as after a restart."""
        counters = self.pulse.backend.handlers(WorkerOptions(clock=self.clock))[0]
        alerts = alerts_handler(
            self.pulse.store, self.pulse.views, self.pulse.settings, counters.position, self.clock, dispatch=False
        )
        return counters, alerts

    def engine(self) -> ProjectionEngine:
        return ProjectionEngine(list(self.handlers()))

    def tail(self, engine: ProjectionEngine | None = None) -> LogTail:
        return LogTail(self.pulse.store, engine or self.engine(), clock=self.clock)

    def post(self, *events: tuple[str, dict]) -> None:
        # A second later each time: gauges keep the reading with the latest occurredAt.
        self.clock.advance(1)
        at = now_utc(self.clock) - timedelta(milliseconds=500)
        self.pulse.store.ingest([Event(type=t, occurred_at=at, properties=p) for t, p in events])

    def stock(self, **levels: int) -> None:
        self.post(*[("stock_level", {"product": product, "level": level}) for product, level in levels.items()])

    def next_batch(self, after: int, replay: bool = False) -> FeedBatch:
        page = self.pulse.store.read_facts(str(after) if after else None, limit=1000)
        upto = page.events[-1].position
        assert upto is not None
        return FeedBatch("", after + 1, upto, page.events, replay=replay)

    def outbox(self) -> Outbox:
        return Outbox(
            self.pulse.store,
            {"LOG": self.notifier, "WEBHOOK": self.notifier, "SNS": self.notifier},
            clock=self.clock.now,
            sleep=lambda _: None,
        )


@pytest.fixture(params=["sqlite", "memory"])
def rig(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Iterator[AlertRig]:
    if request.param == "sqlite":
        settings = Settings(store="sqlite", db=str(tmp_path / "pulse.db"))
    else:
        settings = Settings(store="memory", db=f"alerts-{tmp_path.name}")
    pulse = bootstrap(settings, clock=clock, create=True)
    defs.define_gauge(pulse.store, STOCK)
    defs.define_metric(pulse.store, SALES)
    yield AlertRig(pulse, clock, MemoryNotifier())
    pulse.close()
    drop_tables(settings)
