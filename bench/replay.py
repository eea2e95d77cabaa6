"""Replay figures on the embedded store (SQLite): `pulse replay metrics` of N stored facts
with 3 metrics (the issue's target: 1,000,000 facts in 20 s or less on the 2-core
machine), the switch's pause of the live worker, and the replay's answers compared with
the live read model's.

    .venv/bin/python bench/replay.py                 # 1,000,000 facts (minutes to set up)
    .venv/bin/python bench/replay.py --quick         # 20,000 facts: checks the bench works
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bootstrap import WorkerOptions, bootstrap  # noqa: E402
from domain import metrics as defs  # noqa: E402
from domain.events import Event  # noqa: E402
from domain.settings import Settings  # noqa: E402
from projections.counters import PROJECTION  # noqa: E402
from services.replay import ReplayProgress  # noqa: E402

TARGET_SECONDS_PER_MILLION = 20.0
METRICS = [
    defs.validate_metric("revenue", "sale", "sum", "amount", ["category", "store"]),
    defs.validate_metric("orders", "sale", "count", None, ["store"]),
    defs.validate_metric("basket", "sale", "avg", "amount"),
]


def sales(count: int, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    return [
        Event(
            id=f"s{i}",
            type="sale",
            occurred_at=start + timedelta(seconds=i * 86400 * 7 / count),
            properties={
                "amount": round(rng.uniform(1, 200), 2),
                "category": f"category-{rng.randrange(10)}",
                "store": f"store-{rng.randrange(5)}",
            },
        )
        for i in range(count)
    ]


def snapshot(pulse) -> dict:
    """The counters a client reads: every metric's hourly cells and the built-in count."""
    return {
        key: pulse.views.read_counters(key, "hour", -(2**62), 2**62) for key in [m.key for m in METRICS] + ["type:sale"]
    }


def differences(replayed: dict, live: dict) -> list[str]:
    """Cells that differ: counts, minima and maxima exactly, sums to 1e-9 relative (a replay
    adds the same amounts in other batches, and float addition is not associative)."""
    found = []
    for key in live:
        a, b = replayed.get(key, []), live[key]
        if [(c.bucket, c.group) for c in a] != [(c.bucket, c.group) for c in b]:
            found.append(f"{key}: buckets differ")
            continue
        for x, y in zip(a, b, strict=True):
            if (x.count, x.min, x.max) != (y.count, y.min, y.max) or not math.isclose(
                x.sum, y.sum, rel_tol=1e-9, abs_tol=1e-6
            ):
                found.append(f"{key} bucket {x.bucket}: {x} != {y}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20,000 facts: check that the bench runs")
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    events = 20_000 if args.quick else args.events

    with tempfile.TemporaryDirectory() as tmp:
        pulse = bootstrap(Settings(store="sqlite", db=str(Path(tmp) / "pulse.db")))
        for metric in METRICS:
            defs.define_metric(pulse.store, metric)
        started = time.perf_counter()
        facts = sales(events)
        for i in range(0, len(facts), 10_000):
            pulse.store.ingest(facts[i : i + 10_000])
        pulse.worker(WorkerOptions(batch_size=args.batch_size)).catch_up()
        print(f"setup: {events:,} facts stored and projected live in {time.perf_counter() - started:.1f} s")
        live = snapshot(pulse)

        pages: list[float] = []

        def progress(step: ReplayProgress) -> None:
            pages.append(time.perf_counter())

        replayer = pulse.replayer(WorkerOptions(batch_size=args.batch_size))
        generations = replayer.generations
        opened = generations.open

        switch_seconds: list[float] = []

        def timed_open(projection: str, fresh: bool = False):
            generation = opened(projection, fresh)
            switch = generation.switch

            def timed_switch(catch_up):
                at = time.perf_counter()
                try:
                    return switch(catch_up)
                finally:
                    switch_seconds.append(time.perf_counter() - at)

            generation.switch = timed_switch
            return generation

        generations.open = timed_open
        started = time.perf_counter()
        result = replayer.replay(PROJECTION, on_progress=progress)
        seconds = time.perf_counter() - started
        different = differences(snapshot(pulse), live)
        pulse.close()

    rate = result.events / seconds if seconds else 0.0
    per_million = seconds * 1_000_000 / max(result.events, 1)
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
    print(
        f"replay of {result.events:,} facts, {len(METRICS)} metrics + built-in count: {seconds:.2f} s"
        f" ({rate:,.0f} events/s; {per_million:.1f} s per million, target <= {TARGET_SECONDS_PER_MILLION:.0f} s)"
    )
    print(f"switch (the one write transaction the live worker waits for): {switch_seconds[0] * 1000:.0f} ms")
    print(
        "answers after the switch equal the live read model's (sums to 1e-9 relative):"
        f" {'yes' if not different else 'NO: ' + '; '.join(different[:3])}"
    )
    if different:
        sys.exit(1)


if __name__ == "__main__":
    main()
