"""Exactly-once effects: redelivered batches, racing workers, kill -9, backfill."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from domain import metrics as defs
from domain.clock import FrozenClock, now_utc
from domain.events import Event
from domain.ports import CheckpointConflict, ViewStore
from projections.buckets import Bucketing, Retention
from projections.counters import PROJECTION
from tests.projections.conftest import ProjectionRig, worker_env
from tests.projections.oracle import EVERYTHING, all_facts, assert_views_match_facts
from tests.support import at_awkward_instants, real_now
from workers.projection_runner import ProjectionRunner
from workers.sqlite_worker import SqliteWorker

START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
REVENUE = defs.validate_metric("revenue", "sale", "sum", "amount", ["category", "store"])
ITEMS = defs.validate_metric("items", "sale", "max", "quantity", ["category"])
STOCK = defs.validate_gauge("stock", "stock_level", "level", "product")


def shop_events(n: int, seed: int, prefix: str = "s", start: datetime = START) -> list[Event]:
    """``n`` sales and stock readings over the 3 days from ``start``."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        occurred = start + timedelta(seconds=rng.randint(0, 3 * 86400), microseconds=rng.randint(0, 999_999))
        if rng.random() < 0.8:
            props = {
                "amount": rng.randint(1, 300),
                "quantity": rng.randint(1, 5),
                "category": rng.choice(["coffee", "pastry", "merch"]),
                "store": rng.choice(["downtown", "harbor"]),
            }
            events.append(Event(id=f"{prefix}{i}", type="sale", occurred_at=occurred, properties=props))
        else:
            props = {"product": rng.choice(["mug", "beans"]), "level": rng.randint(0, 60)}
            events.append(Event(id=f"{prefix}{i}", type="stock_level", occurred_at=occurred, properties=props))
    return events


def snapshot(views: ViewStore, names: list[str]) -> dict:
    """Everything a client can read, for before/after comparisons."""
    out: dict = {"types": views.event_types(), "gauges": views.read_gauges("stock")}
    for name in names:
        for resolution in ("minute", "hour", "day"):
            for group in (None, 0, 1):
                out[(name, resolution, group)] = views.read_counters(name, resolution, *EVERYTHING, group_by=group)
    return out


def runner_for(rig: ProjectionRig) -> ProjectionRunner:
    runner = ProjectionRunner(rig.events, rig.views, Bucketing(rig.timezone))
    runner.refresh_definitions()
    return runner


def test_a_batch_delivered_twice_changes_nothing(make_rig: Callable[..., ProjectionRig]) -> None:
    rig = make_rig()
    defs.define_metric(rig.events, REVENUE)
    defs.define_gauge(rig.events, STOCK)
    rig.catch_up(100)  # the views now reflect the definitions
    rig.events.ingest(shop_events(300, seed=1))
    runner = runner_for(rig)
    start = runner.checkpoint().position
    page = rig.events.read_facts(str(start), limit=1000)
    upto = page.events[-1].position

    assert runner.process(page.events, after=start, upto=upto) is True
    once = snapshot(rig.views, ["revenue", "type:sale"])
    assert runner.process(page.events, after=start, upto=upto) is False
    assert snapshot(rig.views, ["revenue", "type:sale"]) == once
    assert rig.views.checkpoint(PROJECTION).position == upto
    assert_views_match_facts(rig.views, rig.events, [REVENUE], [STOCK], rig.timezone)


def test_a_batch_from_a_stale_checkpoint_is_refused_whole(make_rig: Callable[..., ProjectionRig]) -> None:
    rig = make_rig()
    rig.events.ingest(shop_events(200, seed=2))
    runner = runner_for(rig)
    first = rig.events.read_facts(None, limit=100)
    runner.process(first.events, after=0, upto=first.events[-1].position)
    before = snapshot(rig.views, ["type:sale"])

    second = rig.events.read_facts(first.cursor, limit=100)
    with pytest.raises(CheckpointConflict):
        # Another worker's view of the checkpoint: 0, but it is at the end of the first batch.
        runner.process(second.events, after=0, upto=second.events[-1].position)
    assert snapshot(rig.views, ["type:sale"]) == before


def test_a_batch_projected_with_old_definitions_is_refused(make_rig: Callable[..., ProjectionRig]) -> None:
    rig = make_rig()
    rig.events.ingest(shop_events(50, seed=3))
    stale = runner_for(rig)  # knows no metric
    defs.define_metric(rig.events, REVENUE)
    rig.catch_up(10)  # another worker rebuilds revenue and records definitions version 1
    rig.events.ingest(shop_events(50, seed=4, prefix="late"))
    position = rig.views.checkpoint(PROJECTION).position
    page = rig.events.read_facts(str(position), limit=100)
    with pytest.raises(CheckpointConflict, match="definitions version"):
        stale.process(page.events, after=position, upto=page.events[-1].position)
    rig.catch_up(10)
    assert_views_match_facts(rig.views, rig.events, [REVENUE], [], rig.timezone)


def test_metrics_defined_later_are_backfilled_once_while_workers_race(
    make_rig: Callable[..., ProjectionRig], clock: FrozenClock
) -> None:
    rig = make_rig("Europe/Paris")
    if rig.backend != "sqlite":
        pytest.skip("racing in-process tailers is the embedded setup")
    stop = threading.Event()
    # The workers apply retention as they run: the facts are of the 3 days before their clock.
    workers = [
        SqliteWorker(rig.events, rig.views, Bucketing(rig.timezone), batch_size=size, idle_seconds=0.001, clock=clock)
        for size in (7, 50)
    ]
    threads = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
    for thread in threads:
        thread.start()
    try:
        events = shop_events(3000, seed=5, start=now_utc(clock) - timedelta(days=3, seconds=1))
        for start in range(0, len(events), 150):
            rig.events.ingest(events[start : start + 150])
            if start == 900:
                defs.define_metric(rig.events, REVENUE)
            if start == 1800:
                defs.define_gauge(rig.events, STOCK)
                defs.define_metric(rig.events, ITEMS)
            if start == 2400:
                defs.update_metric(rig.events, replace(REVENUE, dimensions=("store",)))
        deadline = time.monotonic() + 60
        while rig.views.checkpoint(PROJECTION).position < rig.events.last_position():  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "workers did not catch up"
            time.sleep(0.02)
        while rig.views.checkpoint(PROJECTION).definitions_version < 4:
            assert time.monotonic() < deadline, "workers did not apply the definitions"
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    revenue_by_store = defs.validate_metric("revenue", "sale", "sum", "amount", ["store"])
    assert_views_match_facts(rig.views, rig.events, [revenue_by_store, ITEMS], [STOCK], rig.timezone)


def test_a_deleted_metric_loses_its_counters(make_rig: Callable[..., ProjectionRig]) -> None:
    rig = make_rig()
    defs.define_metric(rig.events, REVENUE)
    rig.events.ingest(shop_events(100, seed=6))
    rig.catch_up(30)
    assert rig.views.read_counters("revenue", "day", *EVERYTHING)
    defs.delete_metric(rig.events, "revenue")
    rig.catch_up(30)
    for resolution in ("minute", "hour", "day"):
        assert rig.views.read_counters("revenue", resolution, *EVERYTHING) == []
    # The built-in count is untouched.
    assert sum(c.count for c in rig.views.read_counters("type:sale", "day", *EVERYTHING)) == sum(
        1 for f in all_facts(rig.events) if f.type == "sale"
    )


def test_a_worker_killed_mid_batch_ends_equal_to_a_recomputation(make_rig: Callable[..., ProjectionRig]) -> None:
    rig = make_rig("America/New_York")
    # `pulse worker` applies the default retention (7 days of minutes) by the machine's clock
    # as it starts: the facts are of the last 3 days, or it would prune their minutes.
    events = shop_events(30_000, seed=7, start=real_now() - timedelta(days=3, seconds=1))
    for start in range(0, len(events), 5000):
        rig.events.ingest(events[start : start + 5000])
    defs.define_metric(rig.events, REVENUE)
    defs.define_gauge(rig.events, STOCK)
    total = len(events)

    def start_worker() -> subprocess.Popen:
        return subprocess.Popen(
            rig.worker_command(), env=worker_env(rig), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.005)

    def position() -> int:
        return rig.views.checkpoint(PROJECTION).position

    killed_at = []
    # Three kills at growing progress, each while batches are being written.
    for fraction in (0.1, 0.4, 0.7):
        worker = start_worker()
        wait_for(lambda f=fraction: position() > f * total, f"progress past {fraction:.0%}")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        killed_at.append(position())
    assert killed_at == sorted(killed_at) and killed_at[-1] < total

    # A metric defined now makes the next worker start with a rebuild of the history;
    # kill it during that rebuild too (it is one transaction: all or nothing).
    defs.define_metric(rig.events, ITEMS)
    worker = start_worker()
    time.sleep(0.3)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()

    worker = start_worker()
    try:
        wait_for(lambda: position() >= rig.events.last_position(), "the last worker to catch up")  # type: ignore[attr-defined]
        wait_for(lambda: rig.views.checkpoint(PROJECTION).definitions_version == 3, "the rebuild")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert_views_match_facts(rig.views, rig.events, [REVENUE, ITEMS], [STOCK], rig.timezone)


@at_awkward_instants
def test_retention_prunes_old_cells_per_resolution(make_rig: Callable[..., ProjectionRig], clock: FrozenClock) -> None:
    rig = make_rig("Europe/Paris")
    if rig.backend != "sqlite":
        pytest.skip("DynamoDB expires cells with TTL instead")
    now = now_utc(clock)
    # Minutes are kept 7 days and a day of margin, hours 400 days, days forever: one fact
    # on each side of each horizon, a minute (an hour) away from it.
    ages = {
        "recent": timedelta(hours=1),
        "minutes_kept": timedelta(days=8, minutes=-1),
        "minutes_gone": timedelta(days=8, minutes=1),
        "hours_kept": timedelta(days=400, hours=-1),
        "hours_gone": timedelta(days=400, seconds=1),
    }
    rig.events.ingest(
        [Event(id=name, type="sale", occurred_at=now - age, properties={"amount": 1}) for name, age in ages.items()]
    )
    rig.catch_up(10)
    worker = SqliteWorker(rig.events, rig.views, Bucketing(rig.timezone), Retention(), clock=clock)
    assert worker.prune() > 0

    def counted(resolution: str) -> int:
        return sum(c.count for c in rig.views.read_counters("type:sale", resolution, *EVERYTHING))

    assert counted("minute") == 2  # recent, minutes_kept
    assert counted("hour") == 4  # all but hours_gone
    assert counted("day") == 5  # days are kept forever
