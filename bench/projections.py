"""Projection figures on the embedded default (SQLite), each printed with its target.

1. Catch-up of the counters projection: a day of sales (10 categories x 5 stores, --events
   of them) counted by a metric with 2 dimensions at 3 resolutions, plus the built-in
   count per event type.
   a. projection + view writes: facts already read, batches of 5,000 projected and applied
      with their checkpoint, one SQLite transaction each (what a worker does per batch);
   b. the worker end to end: also reading the facts from the event db (read_facts, the
      lean read path: integer times, no datetime per fact), with the counters alone, then
      with every read model `pulse worker` runs (counters, recent events, the Parquet
      archive), for the day and for the same number of sales over a week.
2. The same counters with the ``eventsourcing`` library's projection, side by side on the
   same machine: its ``ProjectionRunner`` subscribed to an application holding the same
   sales (in memory: its SQLite application recorder has no subscriptions), one call of
   ``process_event`` per event updating a SQLite view and its tracking record in one
   transaction, the library's model. It is a bench-only dependency:
   ``.venv/bin/pip install eventsourcing``.
3. Freshness: a real ``pulse serve`` (gunicorn + its projection worker) on that data;
   each probe POSTs one event to /v1/events and polls ``series`` until it is counted.
4. ``series`` latency over HTTP for 24 hourly points of the 2-dimension metric.

    .venv/bin/python bench/projections.py                 # defaults: 200,000 events
    .venv/bin/python bench/projections.py --events 50000 --probes 50
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import free_port, start_server, stop_server  # noqa: E402 - bench/ingest.py, beside this script

from bootstrap import WorkerOptions, bootstrap  # noqa: E402
from domain import metrics as defs  # noqa: E402
from domain.events import Event, RecordedEvent  # noqa: E402
from domain.ports import all_facts  # noqa: E402
from domain.settings import Settings  # noqa: E402
from projections.buckets import Bucketing  # noqa: E402
from projections.counters import PROJECTION, MetricsProjection  # noqa: E402
from projections.recent import PROJECTION as RECENT  # noqa: E402
from storage.sqlite import SqliteEventStore  # noqa: E402
from storage.sqlite_views import SqliteViewStore  # noqa: E402

TARGET_CATCH_UP = 100_000  # events/s
TARGET_FRESHNESS_P99 = 0.250  # s
BATCH = 5000
CATEGORIES = [f"category-{i}" for i in range(10)]
STORES = [f"store-{i}" for i in range(5)]
REVENUE = defs.validate_metric("revenue", "sale", "sum", "amount", ["category", "store"])


def sales(n: int, end: datetime, days: float = 1.0, seed: int = 7) -> list[Event]:
    """``n`` sales spread over the ``days`` before ``end``, in time order."""
    rng = random.Random(seed)
    step = days * 86400 / n
    start = end - timedelta(days=days)
    return [
        Event(
            id=f"sale-{i:07d}",
            type="sale",
            occurred_at=start + timedelta(seconds=i * step),
            properties={
                "amount": round(rng.uniform(1, 120), 2),
                "category": rng.choice(CATEGORIES),
                "store": rng.choice(STORES),
            },
        )
        for i in range(n)
    ]


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    met = value >= target if higher_is_better else value <= target
    return "meets the target" if met else "MISSES the target"


# --- 1. catch-up -------------------------------------------------------------------------


def catch_up_projection(facts: list[RecordedEvent], views_path: Path) -> tuple[float, float]:
    """Events per second, and counter cells written per event."""
    views = SqliteViewStore(views_path)
    projection = MetricsProjection([REVENUE], [], Bucketing("UTC"))
    cells = 0
    started = time.perf_counter()
    after = 0
    for start in range(0, len(facts), BATCH):
        batch = facts[start : start + BATCH]
        upto = batch[-1].position
        changes = projection.project(batch)
        cells += len(changes.counters)
        views.apply(PROJECTION, "", changes, after, upto, definitions_version=0)
        after = upto
    elapsed = time.perf_counter() - started
    views.close()
    return len(facts) / elapsed, cells / len(facts)


def sparse_facts(n: int) -> list[RecordedEvent]:
    """The same number of sales over a week: about one minute cell per sale."""
    week = sales(n, datetime.now(UTC).replace(microsecond=0), days=7, seed=8)
    return [
        RecordedEvent(e.id, e.type, e.occurred_at, e.properties, None, "$facts", None, i + 1, e.occurred_at)
        for i, e in enumerate(week)
    ]


def read_rate(store: SqliteEventStore) -> float:
    started = time.perf_counter()
    n = len(all_facts(store, BATCH))
    return n / (time.perf_counter() - started)


def catch_up_worker(db: Path, n: int, only: set[str] | None = None, archive_process: bool = True) -> float:
    """`pulse worker` as bootstrap builds it, on a fresh copy of the event db: every read
    model (the archive in a process of its own, as `pulse worker` runs it, or with
    ``archive_process`` False on the one engine), or ``only`` the named projections."""
    copy = db.with_name(f"{db.stem}-{'-'.join(sorted(only or {'all'}))}-{int(archive_process)}.db")
    with sqlite3.connect(db) as source:
        source.execute("VACUUM INTO ?", (str(copy),))
    pulse = bootstrap(Settings(db=str(copy)))
    options = WorkerOptions(batch_size=BATCH, archive_process=archive_process)
    if only is None:
        worker = pulse.worker(options)
    else:
        handlers = [h for h in pulse.backend.handlers(options) if h.name in only]
        worker = pulse.backend.worker(pulse.engine(options, handlers), options, pulse.clock)
    worker.engine.prepare()  # the metric's (empty) rebuild
    started = time.perf_counter()
    done = worker.catch_up()  # every fact, the archive's final flush included
    elapsed = time.perf_counter() - started
    pulse.close()
    assert done == n, (done, n)
    return done / elapsed


# --- 2. the eventsourcing library --------------------------------------------------------


def eventsourcing_rate(events: list[Event], directory: Path) -> float | None:
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
        from eventsourcing.persistence import Tracking
        from eventsourcing.projection import Projection, ProjectionRunner
        from eventsourcing.sqlite import SQLiteTrackingRecorder
    except ImportError:
        return None

    class Till(Aggregate):
        @event("Sold")
        def sell(self, amount: float, category: str, store: str, occurred_at: datetime) -> None:
            pass

    class CountersView(SQLiteTrackingRecorder):
        def construct_create_table_statements(self) -> list[str]:
            return [
                *super().construct_create_table_statements(),
                "CREATE TABLE IF NOT EXISTS counters (metric TEXT, resolution TEXT, bucket INTEGER, d1 TEXT,"
                " d2 TEXT, count INTEGER, total REAL, low REAL, high REAL,"
                " PRIMARY KEY (metric, resolution, bucket, d1, d2)) WITHOUT ROWID",
            ]

        def add(self, rows: list[tuple], tracking: Tracking) -> None:
            with self.datastore.transaction(commit=True) as c:
                c.executemany(
                    "INSERT INTO counters VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                    " count = count + 1, total = total + excluded.total, low = min(low, excluded.low),"
                    " high = max(high, excluded.high)",
                    rows,
                )
                self._insert_tracking(c, tracking)

    bucketing = Bucketing("UTC")

    class CountersProjection(Projection[CountersView]):
        name = "counters"

        def process_event(self, domain_event: object, tracking: Tracking) -> None:
            if not isinstance(domain_event, Till.Sold):
                self.view.insert_tracking(tracking)
                return
            ts = domain_event.occurred_at.timestamp()
            amount = domain_event.amount
            rows = []
            for resolution in ("minute", "hour", "day"):
                bucket = bucketing.floor(resolution, ts)
                rows.append(
                    ("revenue", resolution, bucket, domain_event.category, domain_event.store, amount, amount, amount)
                )
                rows.append(("type:sale", resolution, bucket, "", "", 0.0, None, None))
            self.view.add(rows, tracking)

    prefilled: list = []

    class Shop(Application):
        def construct_recorder(self):  # the runner's application reads the sales written below
            return prefilled[0] if prefilled else super().construct_recorder()

    writer = Shop()
    tills = [Till() for _ in range(50)]
    for i, sale in enumerate(events):
        p = sale.properties
        tills[i % len(tills)].sell(p["amount"], p["category"], p["store"], sale.occurred_at)
        if i % 2000 == 1999:
            writer.save(*tills)
    writer.save(*tills)
    prefilled.append(writer.recorder)
    last = writer.recorder.max_notification_id()

    env = {"COUNTERS_PERSISTENCE_MODULE": "eventsourcing.sqlite", "COUNTERS_SQLITE_DBNAME": str(directory / "es.db")}
    started = time.perf_counter()
    with ProjectionRunner(
        application_class=Shop, projection_class=CountersProjection, view_class=CountersView, env=env
    ) as runner:
        runner.wait(last, timeout=3600)
        elapsed = time.perf_counter() - started
    return last / elapsed


# --- 3 and 4. freshness and series latency over HTTP --------------------------------------


class Http:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        return response.status, json.loads(response.read())

    def gql(self, query: str) -> dict:
        status, body = self.post("/graphql", {"query": query})
        if status != 200 or body.get("errors"):
            raise RuntimeError(f"/graphql: {status} {body}")
        return body["data"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def freshness(client: Http, probes: int) -> list[float]:
    client.gql('mutation { defineMetric(input: {name: "fresh", eventType: "probe", dimensions: ["n"]}) { name } }')
    # The worker rebuilds the new metric over the history first; wait for that to finish.
    warm = {"id": "probe-warm", "type": "probe", "occurredAt": datetime.now(UTC).isoformat(), "properties": {"n": -1}}
    client.post("/v1/events", {"events": [warm]})
    query = (
        '{ series(metric: "fresh", resolution: MINUTE, last: 2, filter: [{dimension: "n", value: "%s"}])'
        " { points { count } } }"
    )
    while sum(p["count"] for p in client.gql(query % -1)["series"]["points"]) < 1:
        time.sleep(0.01)
    delays = []
    for n in range(probes):
        event = {
            "id": f"probe-{n}",
            "type": "probe",
            "occurredAt": datetime.now(UTC).isoformat(),
            "properties": {"n": n},
        }
        started = time.perf_counter()
        status, _ = client.post("/v1/events", {"events": [event]})
        assert status == 202
        while sum(p["count"] for p in client.gql(query % n)["series"]["points"]) < 1:
            time.sleep(0.002)
        delays.append(time.perf_counter() - started)
        time.sleep(random.uniform(0.02, 0.1))  # probes at random phases of the worker's polling
    return delays


def series_latency(client: Http, requests: int) -> list[float]:
    query = (
        '{ series(metric: "revenue", resolution: HOUR, last: 24) { points { bucket value count partial } watermark } }'
    )
    points = client.gql(query)["series"]["points"]
    assert len(points) == 24 and sum(p["count"] for p in points) > 0
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        client.gql(query)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--es-events", type=int, default=50_000, help="Events for the eventsourcing run.")
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--series-requests", type=int, default=300)
    args = parser.parse_args()

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="pulse-bench-") as tmp:
        directory = Path(tmp)
        db = directory / "pulse.db"
        store = SqliteEventStore(db)
        events = sales(args.events, datetime.now(UTC).replace(microsecond=0))
        for start in range(0, len(events), BATCH):
            store.ingest(events[start : start + BATCH])
        defs.define_metric(store, REVENUE)
        facts = all_facts(store, BATCH)
        print(f"\n{len(facts):,} sales over 24 h, metric revenue: sum(amount) by (category, store) x minute/hour/day")

        projected, per_event = catch_up_projection(facts, directory / "a.views.db")
        print(
            f"1a catch-up, projection + view writes: {projected:,.0f} events/s ({per_event:.2f} cells/event)"
            f"  (target >= {TARGET_CATCH_UP:,}: {verdict(projected, TARGET_CATCH_UP)})"
        )
        sparse, sparse_cells = catch_up_projection(sparse_facts(len(facts)), directory / "s.views.db")
        print(
            f"   the same over a week (sparser):    {sparse:,.0f} events/s ({sparse_cells:.2f} cells/event)"
            f"  (target >= {TARGET_CATCH_UP:,}: {verdict(sparse, TARGET_CATCH_UP)})"
        )
        worker_rate = catch_up_worker(db, len(facts), only={PROJECTION})
        print(
            f"1b catch-up, worker incl. read_facts:  {worker_rate:,.0f} events/s (counters alone, as before)"
            f"  (target >= {TARGET_CATCH_UP:,}: {verdict(worker_rate, TARGET_CATCH_UP)})"
        )
        recent_rate = catch_up_worker(db, len(facts), only={PROJECTION, RECENT})
        print(f"   + the recent-events feed:           {recent_rate:,.0f} events/s")
        every_rate = catch_up_worker(db, len(facts))
        print(
            f"   every read model (+ the archive):   {every_rate:,.0f} events/s (`pulse worker` as it runs)"
            f"  (target >= {TARGET_CATCH_UP:,}: {verdict(every_rate, TARGET_CATCH_UP)})"
        )
        one_process = catch_up_worker(db, len(facts), archive_process=False)
        print(f"   the same on one engine, one process: {one_process:,.0f} events/s (the archive beside the counters)")
        sparse_db = directory / "sparse.db"
        sparse_store = SqliteEventStore(sparse_db)
        week = sales(len(facts), datetime.now(UTC).replace(microsecond=0), days=7, seed=8)
        for start in range(0, len(week), BATCH):
            sparse_store.ingest(week[start : start + BATCH])
        defs.define_metric(sparse_store, REVENUE)
        sparse_store.close()
        sparse_every = catch_up_worker(sparse_db, len(facts))
        print(
            f"   the same over a week (sparser):     {sparse_every:,.0f} events/s (every read model)"
            f"  (target >= {TARGET_CATCH_UP:,}: {verdict(sparse_every, TARGET_CATCH_UP)})"
        )
        sparse_one = catch_up_worker(sparse_db, len(facts), archive_process=False)
        print(f"   the same on one engine, one process: {sparse_one:,.0f} events/s")
        print(f"   of which read_facts alone reads:   {read_rate(store):,.0f} events/s (storage/sqlite.py)")

        es = eventsourcing_rate(events[: args.es_events], directory)
        if es is None:
            print("2  eventsourcing library not installed: .venv/bin/pip install eventsourcing (bench only)")
        else:
            from importlib.metadata import version as installed

            version = installed("eventsourcing")
            print(
                f"2  eventsourcing {version} ProjectionRunner, same counters, {args.es_events:,} events:"
                f" {es:,.0f} events/s; Pulse is {projected / es:,.1f}x (1a) and {worker_rate / es:,.1f}x (1b)"
            )
        store.close()

        port = free_port()
        server = start_server(db, port, 2, 8, directory / "serve.log", "--no-auth")
        try:
            client = Http(port)
            delays = freshness(client, args.probes)
            p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
            print(
                f"3  freshness POST -> visible in series, {len(delays)} probes: p50 {p50 * 1000:.0f} ms,"
                f" p99 {p99 * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms"
                f"  (target p99 <= {TARGET_FRESHNESS_P99 * 1000:.0f} ms: {verdict(p99, TARGET_FRESHNESS_P99, False)})"
            )
            times = series_latency(client, args.series_requests)
            print(
                f"4  series, 24 hourly points over HTTP, {len(times)} requests:"
                f" p50 {statistics.median(times) * 1000:.1f} ms, p99 {percentile(times, 0.99) * 1000:.1f} ms"
            )
        finally:
            stop_server(server)


if __name__ == "__main__":
    main()
