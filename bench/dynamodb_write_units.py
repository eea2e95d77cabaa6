"""DynamoDB write units per event for the counters projection, on DynamoDB Local.

Two runs of the same code (``StreamProjector`` + ``DynamoViewStore``) over real stream
records of the same sales, each on fresh tables:

- batched: the records in batches as Lambda or the poller deliver them (``--batch``,
  100 by default, Lambda's default batch size): each counter item gets one guarded
  UpdateItem per batch with the batch's pre-aggregated delta;
- naive: one record per batch, i.e. one UpdateItem per event per counter item (and a
  checkpoint write per event), what a consumer without pre-aggregation does.

Write units are COMPUTED, not read from ReturnConsumedCapacity (DynamoDB Local misreports
it): every write request the view store sends is metered with the size of the item it
wrote (``storage.dynamodb_base.item_size``: attribute names plus values) and costs
ceil(size / 1 KB) WCU, the standard (non-transactional) rate; a conditional write that
fails still costs its item's size, at least 1 WCU. UpdateItem is charged on the larger
of the item before and after; these updates only grow or keep an item, so the size after
is what is counted.

    .venv/bin/python bench/dynamodb_write_units.py                 # 5,000 sales over an hour
    .venv/bin/python bench/dynamodb_write_units.py --events 20000 --minutes 1440 --batch 1000
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import dynamodb_local  # noqa: E402

from domain import metrics as defs  # noqa: E402
from domain.events import Event  # noqa: E402
from domain.settings import Settings  # noqa: E402
from projections.buckets import Bucketing, Retention  # noqa: E402
from storage.dynamodb import DynamoEventStore, create_tables, drop_tables  # noqa: E402
from storage.dynamodb_feed import ChangeFeed, ChangeRecord  # noqa: E402
from storage.dynamodb_views import DynamoViewStore  # noqa: E402
from workers.dynamodb_poller import feed_batch  # noqa: E402
from workers.dynamodb_rebuild import RebuildTiming, run_pending_rebuild  # noqa: E402
from workers.stream_projector import StreamProjector  # noqa: E402

REVENUE = defs.validate_metric("revenue", "sale", "sum", "amount", ["category", "store"])
KB = 1024


@dataclass
class Meter:
    """Write requests, units and bytes per kind of write (called from the writer threads)."""

    requests: Counter = field(default_factory=Counter)
    units: Counter = field(default_factory=Counter)
    bytes: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, kind: str, size: int) -> None:
        with self.lock:
            self.requests[kind] += 1
            self.units[kind] += max(1, math.ceil(size / KB))
            self.bytes[kind] += size


def sales(n: int, minutes: int, seed: int, late: float = 0.05) -> list[Event]:
    """A live stream: sales in the order they happen, ``late`` of them up to 30 min late."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    arrivals = sorted(rng.uniform(0, minutes * 60) for _ in range(n))
    return [
        Event(
            id=f"s{i:07d}",
            type="sale",
            occurred_at=start + timedelta(seconds=at - (rng.uniform(0, 1800) if rng.random() < late else 0)),
            properties={
                "amount": round(rng.uniform(1, 80), 2),
                "category": rng.choice(["coffee", "tea", "pastry", "merch", "beans"]),
                "store": rng.choice(["downtown", "harbor", "campus"]),
            },
        )
        for i, at in enumerate(arrivals)
    ]


def run(endpoint: str, events: list[Event], batch: int) -> Meter:
    """Project ``events`` through real stream records in batches of ``batch`` records."""
    settings = Settings(store="dynamodb", dynamodb_endpoint=endpoint, table_prefix=f"wu{uuid.uuid4().hex[:8]}")
    create_tables(settings)
    meter = Meter()
    store = DynamoEventStore.from_settings(settings)
    views = DynamoViewStore.from_settings(settings, Retention(), meter=None)
    feed = ChangeFeed.from_settings(settings)
    try:
        bucketing = Bucketing("UTC")
        projector = StreamProjector(store, views, bucketing)
        defs.define_metric(store, REVENUE)
        run_pending_rebuild(store, views, bucketing, projector.history, "bench", RebuildTiming(0, 0))
        for start in range(0, len(events), 500):
            store.ingest(events[start : start + 500])
        records: list[ChangeRecord] = []
        for shard in feed.shards():
            reader = feed.reader(shard.shard_id)
            while page := reader.read():
                records.extend(r for r in page if r.event and r.event.stream_id == "$facts")
        views.meter = meter  # from here on: only what projecting the facts writes
        (shard_id,) = {s.shard_id for s in feed.shards()}
        for start in range(0, len(records), batch):
            projector.apply(feed_batch(shard_id, records[start : start + batch]))
    finally:
        feed.close()
        views.close()
        store.close()
        drop_tables(settings)
    return meter


def counter_units(meter: Meter) -> int:
    """Write units of the counter items alone (their ADDs and min/max folds)."""
    return sum(units for kind, units in meter.units.items() if kind.startswith("counter"))


def report(name: str, events: int, meter: Meter) -> tuple[float, float]:
    requests = sum(meter.requests.values())
    units = sum(meter.units.values())
    size = sum(meter.bytes.values()) / max(requests, 1)
    print(
        f"{name:<28} {events:>7,} {requests:>9,} {requests / events:>10.3f} {units:>9,} {units / events:>10.3f}"
        f" {size:>10.0f}"
    )
    kinds = ", ".join(f"{kind} {meter.units[kind] / events:.3f}" for kind in sorted(meter.units))
    print(f"{'':<28} WCU/event by write: {kinds}")
    return requests / events, units / events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="sales for the batched path")
    parser.add_argument("--naive-events", type=int, default=1000, help="the first N of them for the naive path")
    parser.add_argument("--minutes", type=int, default=60, help="the time the sales spread over")
    parser.add_argument("--batch", type=int, default=100, help="records per batch (Lambda's default is 100)")
    parser.add_argument("--endpoint", help="a running DynamoDB Local (default: start one)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    os.environ.setdefault("AWS_ACCESS_KEY_ID", f"bench{uuid.uuid4().hex[:8]}")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    process = None
    endpoint = args.endpoint
    if endpoint is None:
        dynamodb_local.fetch()
        process, endpoint = dynamodb_local.start()
    try:
        events = sales(args.events, args.minutes, args.seed)
        print(
            f"workload: {args.events:,} sales streamed in time order over {args.minutes} min (5% up to 30 min late);"
            " revenue = sum(amount) by (category x5, store x3) at minute/hour/day + the built-in count"
        )
        print("WCU computed from item sizes: ceil(bytes / 1 KB) per standard write (DynamoDB Local misreports)")
        columns = ("events", 7), ("requests", 9), ("req/event", 10), ("WCU", 9), ("WCU/event", 10), ("avg bytes", 10)
        print(f"{'path':<28} " + " ".join(f"{name:>{width}}" for name, width in columns))
        batched_meter = run(endpoint, events, args.batch)
        _, batched = report(f"batched ({args.batch} records)", len(events), batched_meter)
        naive_events = events[: args.naive_events]
        naive_meter = run(endpoint, naive_events, 1)
        _, naive = report("naive (1 update per event)", len(naive_events), naive_meter)
        print(f"naive / batched write units per event, all writes: {naive / batched:.1f}x")
        cells = (counter_units(naive_meter) / len(naive_events)) / (counter_units(batched_meter) / len(events))
        print(f"naive / batched write units per event, counter items only: {cells:.1f}x")
    finally:
        if process is not None:
            dynamodb_local.stop(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
