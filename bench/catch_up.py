"""Catch-up of a fresh counters read model (what a replay does) from 1,000,000 stored events with 3 metrics, on the
embedded default (SQLite), printed beside its target (<= 20 s), and checked: the replay's
answers equal the live read model's.

1. Live: the events are ingested in batches of 5,000 (a day of sales and page views, 3
   metrics defined first) while a worker (``pulse worker`` as bootstrap builds it, the
   counters projection) follows the log step by step, as it does beside ``pulse serve``.
2. Replay: a copy of the event db with no views at all (what a replay starts from) caught
   up by the same worker, timed from its first read to its last commit: reading the log
   (the lean read path), projecting and writing the views.
3. Check: every counter cell and event-type count of the replayed views equals the live
   one (sums to 1e-9 relative: the replay adds them up in other batches).

    .venv/bin/python bench/catch_up.py                    # 1,000,000 events
    .venv/bin/python bench/catch_up.py --events 50000     # a quick check that it works
    .venv/bin/python bench/catch_up.py --every-read-model # + recent events, alerts and the archive (apart)
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bootstrap import WorkerOptions, bootstrap  # noqa: E402
from domain import metrics as defs  # noqa: E402
from domain.events import Event  # noqa: E402
from domain.settings import Settings  # noqa: E402
from projections.counters import PROJECTION  # noqa: E402
from services.engine import ProjectionEngine  # noqa: E402
from storage.sqlite_views import views_path  # noqa: E402

TARGET_SECONDS = 20.0
BATCH = 5000
CATEGORIES = [f"category-{i}" for i in range(10)]
STORES = [f"store-{i}" for i in range(5)]
PAGES = [f"/page/{i}" for i in range(20)]
METRICS = [
    defs.validate_metric("revenue", "sale", "sum", "amount", ["category", "store"]),
    defs.validate_metric("sales", "sale", "count", None, ["category"]),
    defs.validate_metric("load_time", "page_view", "max", "ms", ["page"]),
]


def workload(n: int, end: datetime, first: int, size: int) -> list[Event]:
    """Facts ``first .. first + size`` of ``n`` spread over the day before ``end``: two
    thirds sales, a third page views (built a chunk at a time to bound memory)."""
    rng = random.Random(first)
    start = end - timedelta(days=1)
    step = 86400 / n
    events = []
    for i in range(first, min(first + size, n)):
        at = start + timedelta(seconds=i * step)
        if i % 3 == 2:
            props = {"page": rng.choice(PAGES), "ms": rng.randint(20, 3000)}
            events.append(Event(id=f"view-{i:08d}", type="page_view", occurred_at=at, properties=props))
        else:
            props = {"amount": round(rng.uniform(1, 120), 2), "category": rng.choice(CATEGORIES)}
            props["store"] = rng.choice(STORES)
            events.append(Event(id=f"sale-{i:08d}", type="sale", occurred_at=at, properties=props))
    return events


def only(pulse, options: WorkerOptions, names: set[str] | None):
    """The named read models' worker, or every read model's as `pulse worker` runs them (the
    archive in a process of its own)."""
    if names is None:
        return pulse.worker(replace(options, archive_process=True))
    handlers = [h for h in pulse.backend.handlers(options) if h.name in names]
    return pulse.backend.worker(ProjectionEngine(handlers), options, pulse.clock)


def live(db: Path, n: int, names: set[str] | None) -> float:
    """Ingest while a worker follows; returns the seconds it took."""
    pulse = bootstrap(Settings(db=str(db), archive="off"), create=True)
    for metric in METRICS:
        defs.define_metric(pulse.store, metric)
    worker = only(pulse, WorkerOptions(batch_size=BATCH), names)
    started = time.perf_counter()
    end = datetime.now(UTC).replace(microsecond=0)
    for first in range(0, n, BATCH):
        pulse.store.ingest(workload(n, end, first, BATCH))
        while worker.step():
            pass
    worker.catch_up()
    pulse.close()
    return time.perf_counter() - started


def replay(db: Path, copy: Path, names: set[str] | None, archive: bool) -> tuple[float, int]:
    """Catch up a fresh views db from the stored events; (seconds, facts read)."""
    with sqlite3.connect(db) as source:
        source.execute("VACUUM INTO ?", (str(copy),))
    settings = Settings(db=str(copy), archive="on" if archive else "off", archive_dir=str(copy.with_suffix(".archive")))
    pulse = bootstrap(settings)
    worker = only(pulse, WorkerOptions(batch_size=BATCH), names)
    started = time.perf_counter()
    done = worker.catch_up()
    elapsed = time.perf_counter() - started
    pulse.close()
    return elapsed, done


def differences(live_views: str, replayed_views: str) -> list[str]:
    """What differs between two views dbs' counters and event-type counts."""

    def rows(path: str, sql: str) -> dict[tuple, tuple]:
        with sqlite3.connect(path) as conn:
            return {row[:-4]: row[-4:] for row in conn.execute(sql)}

    counters = "SELECT metric, resolution, bucket, d1, d2, d3, count, total, low, high FROM counters"
    a, b = rows(live_views, counters), rows(replayed_views, counters)
    found = [f"cell {key} only in {'live' if key in a else 'replay'}" for key in set(a) ^ set(b)]
    for key in set(a) & set(b):
        (c1, t1, l1, h1), (c2, t2, l2, h2) = a[key], b[key]
        if c1 != c2 or (l1, h1) != (l2, h2) or not math.isclose(t1, t2, rel_tol=1e-9, abs_tol=1e-6):
            found.append(f"cell {key}: live {a[key]} replay {b[key]}")
    with sqlite3.connect(live_views) as x, sqlite3.connect(replayed_views) as y:
        types = "SELECT type, events FROM event_types ORDER BY type"
        if x.execute(types).fetchall() != y.execute(types).fetchall():
            found.append("event type counts differ")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--every-read-model", action="store_true", help="replay every read model (recent events, archive) too"
    )
    args = parser.parse_args()
    names = None if args.every_read_model else {PROJECTION}

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="pulse-replay-") as tmp:
        db = Path(tmp) / "pulse.db"
        took = live(db, args.events, names)
        print(
            f"live: {args.events:,} events ingested in batches of {BATCH:,} with a worker following:"
            f" {took:,.1f} s; 3 metrics (revenue sum by category x store, sales count by category,"
            " load_time max by page) + built-in counts"
        )
        copy = Path(tmp) / "replayed.db"
        elapsed, done = replay(db, copy, names, args.every_read_model)
        what = "every read model" if args.every_read_model else "the counters read model"
        million = elapsed * 1_000_000 / done  # the target is for a million events
        verdict = "meets the target" if million <= TARGET_SECONDS else "MISSES the target"
        scaled = "" if done == 1_000_000 else f"; at this rate 1,000,000 take {million:,.1f} s"
        print(
            f"replay of {what} from {done:,} stored events into a fresh views db: {elapsed:,.1f} s,"
            f" {done / elapsed:,.0f} events/s{scaled} (target <= {TARGET_SECONDS:.0f} s for 1,000,000: {verdict})"
        )
        diff = differences(views_path(str(db)), views_path(str(copy)))
        if diff:
            print(f"answers DIFFER from the live read model ({len(diff)}):", *diff[:10], sep="\n  ")
            sys.exit(1)
        print("answers: every counter cell and event-type count equals the live read model's")


if __name__ == "__main__":
    main()
