"""Alert evaluation cost on the embedded default (SQLite), printed beside its target.

The standard workload of bench/projections.py (a day of sales, 10 categories x 5 stores,
metric revenue = sum(amount) by (category, store)) plus stock readings (a gauge per
product), caught up by the worker as `pulse worker` builds it:

1. without alert rules: the counters, the recent-events feed and the alerts handler
   with nothing to evaluate;
2. with --rules rules (default 1,000): half on revenue (ABOVE, some per store, some
   filtered on a category), half on the stock gauge (BELOW 0 to 2, each on one product:
   a few fire, as in a shop); every batch that changes their metric or
   gauge evaluates them, and the clock tick (every second) evaluates them all. Each
   transition is one append to its rule's stream (one SQLite transaction): the figure
   grows with transitions, not with rules.

It prints the catch-up time of each, the time added (target: at most 10 %), and the cost
of one rule evaluation (the alerts handler's time over the evaluations it made).

    .venv/bin/python bench/alerts.py              # 200,000 events, 1,000 rules
    .venv/bin/python bench/alerts.py --quick      # 20,000 events, 1,000 rules: checks it runs
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bootstrap import WorkerOptions, bootstrap  # noqa: E402
from bootstrap.alerts import alerts_handler  # noqa: E402
from domain import alerts  # noqa: E402
from domain import metrics as defs  # noqa: E402
from domain.alerts import AlertRule  # noqa: E402
from domain.events import Event  # noqa: E402
from domain.settings import Settings  # noqa: E402
from services.alert_evaluation import AlertsHandler  # noqa: E402
from services.engine import ProjectionEngine  # noqa: E402
from storage.sqlite import SqliteEventStore  # noqa: E402

TARGET_ADDED = 0.10
TICKS = 5
BATCH = 5000
CATEGORIES = [f"category-{i}" for i in range(10)]
STORES = [f"store-{i}" for i in range(5)]
PRODUCTS = [f"product-{i}" for i in range(20)]
REVENUE = defs.validate_metric("revenue", "sale", "sum", "amount", ["category", "store"])
STOCK = defs.validate_gauge("stock", "stock_level", "level", "product")


def workload(n: int, end: datetime, seed: int = 7) -> list[Event]:
    """``n`` events over the day before ``end``: 90 % sales, 10 % stock readings."""
    rng = random.Random(seed)
    step = 86400 / n
    start = end - timedelta(days=1)
    events = []
    for i in range(n):
        occurred = start + timedelta(seconds=i * step)
        if rng.random() < 0.9:
            props = {"amount": round(rng.uniform(1, 120), 2), "category": rng.choice(CATEGORIES)}
            props["store"] = rng.choice(STORES)
            events.append(Event(id=f"e-{i:07d}", type="sale", occurred_at=occurred, properties=props))
        else:
            props = {"product": rng.choice(PRODUCTS), "level": rng.randint(0, 60)}
            events.append(Event(id=f"e-{i:07d}", type="stock_level", occurred_at=occurred, properties=props))
    return events


def rules(n: int, events: int) -> list[AlertRule]:
    """Thresholds above what the workload reaches (its 5-minute revenue: ~0.9 of the events
    at ~60.5 each, over 288 windows a day), so that, as in a shop, few rules fire."""
    five_minutes = events * 0.9 / 288 * 60.5
    found = []
    for i in range(n):
        if i % 2 == 0:
            per_store = i % 4 == 0
            filters = () if per_store else (("category", CATEGORIES[i % len(CATEGORIES)]),)
            found.append(
                AlertRule(
                    name=f"revenue-{i}",
                    metric="revenue",
                    condition="ABOVE",
                    threshold=round(five_minutes / (5 if per_store else 10) * (2 + i / n), 2),
                    resolution="minute",
                    window=5,
                    per_dimension="store" if per_store else None,
                    filters=filters,
                )
            )
        else:
            found.append(
                AlertRule(
                    name=f"stock-{i}",
                    gauge="stock",
                    condition="BELOW",
                    threshold=float(i % 3),
                    filters=(("key", PRODUCTS[i % len(PRODUCTS)]),),
                )
            )
    return found


class TimedAlerts:
    """Wraps the alerts handler to time it (prepare, handle, maintain) and count evaluations."""

    def __init__(self, inner: AlertsHandler) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0
        self.evaluations = 0
        self.transitions = 0
        self.tick_seconds = 0.0
        evaluate = inner._evaluate_rule

        def counted(name: str, now: float):
            self.evaluations += 1
            made = evaluate(name, now)
            self.transitions += len(made)
            return made

        inner._evaluate_rule = counted  # type: ignore[method-assign]

    def _timed(self, call, *args):
        started = time.perf_counter()
        try:
            return call(*args)
        finally:
            self.seconds += time.perf_counter() - started

    def position(self, partition: str) -> int:
        return self.inner.position(partition)

    def prepare(self) -> None:
        self._timed(self.inner.prepare)

    def handle(self, batch) -> bool:
        return self._timed(self.inner.handle, batch)

    def maintain(self, now: float) -> None:
        self._timed(self.inner.maintain, now)

    def forget(self) -> None:
        self.inner.forget()

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


def catch_up(db: Path, label: str) -> tuple[float, TimedAlerts | None]:
    """Seconds `pulse worker` takes to catch up on a fresh copy of ``db``."""
    copy = db.with_name(f"{db.stem}-{label}.db")
    with sqlite3.connect(db) as source:
        source.execute("VACUUM INTO ?", (str(copy),))
    pulse = bootstrap(Settings(db=str(copy)))
    options = WorkerOptions(batch_size=BATCH)
    handlers = pulse.backend.handlers(options)
    timed = None
    for i, handler in enumerate(handlers):
        if isinstance(handler, AlertsHandler):
            # Without a dispatcher thread: delivering is not the worker's cost (nor the bench's).
            quiet = alerts_handler(pulse.store, pulse.views, pulse.settings, handler.counters_position, dispatch=False)
            handlers[i] = timed = TimedAlerts(quiet)
    worker = pulse.backend.worker(ProjectionEngine(handlers), options, pulse.clock)
    worker.step()  # the metric's (empty) rebuild and the first batch
    started = time.perf_counter()
    worker.catch_up()
    elapsed = time.perf_counter() - started
    if timed is not None:
        # A clock tick: every rule evaluated against the caught-up views (as every 5 s).
        started = time.perf_counter()
        for _ in range(TICKS):
            timed.inner.tick(pulse.clock.now())
        timed.tick_seconds = (time.perf_counter() - started) / TICKS
    pulse.close()
    return elapsed, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="20,000 events: checks the bench runs.")
    args = parser.parse_args()
    events = 20_000 if args.quick else args.events

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="pulse-bench-alerts-") as tmp:
        directory = Path(tmp)
        bare, ruled = directory / "bare.db", directory / "ruled.db"
        for db, count in ((bare, 0), (ruled, args.rules)):
            store = SqliteEventStore(db)
            facts = workload(events, datetime.now(UTC).replace(microsecond=0))
            for start in range(0, len(facts), BATCH):
                store.ingest(facts[start : start + BATCH])
            defs.define_metric(store, REVENUE)
            defs.define_gauge(store, STOCK)
            for rule in rules(count, events):
                alerts.define_rule(store, rule)
            store.close()
        print(f"\n{events:,} events (90 % sales, 10 % stock readings) over 24 h, batches of {BATCH:,}")

        without, _ = catch_up(bare, "run")
        with_rules, timed = catch_up(ruled, "run")
        assert timed is not None
        added = (with_rules - without) / without
        verdict = "meets the target" if added <= TARGET_ADDED else "MISSES the target"
        print(f"1  catch-up without rules:      {without:.2f} s ({events / without:,.0f} events/s)")
        print(f"2  catch-up with {args.rules:,} rules:    {with_rules:.2f} s ({events / with_rules:,.0f} events/s)")
        print(f"   added: {added * 100:+.1f} %  (target <= {TARGET_ADDED * 100:.0f} %: {verdict})")
        if timed.evaluations:
            per = timed.seconds / timed.evaluations
            print(
                f"   alerts handler: {timed.seconds:.2f} s over {timed.evaluations:,} rule evaluations"
                f" = {per * 1e6:,.0f} us per rule evaluated on a change; {timed.transitions:,} transitions recorded"
            )
        print(f"3  one tick, all {args.rules:,} rules on the caught-up views: {timed.tick_seconds * 1000:.1f} ms")


if __name__ == "__main__":
    main()
