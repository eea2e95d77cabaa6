"""The Parquet archive (services/archive.py) on the three blob stores: every fact exactly
once whatever the workload (duplicates, late events, a batch delivered twice, a restart
mid-buffer, a crash mid-flush), DuckDB's hive-partitioned counts equal to the store's,
compaction keeping the row set, typed columns of the right Arrow types; and its wiring
(the embedded backend's worker archives beside the db, a clean stop flushes)."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from bootstrap import Pulse, WorkerOptions, bootstrap, drop_tables
from domain import metrics as defs
from domain.blobs import BlobStore
from domain.events import Event
from domain.settings import Settings
from projections.archive import live_files, parse_columns, read_table, state_key
from services.archive import ArchiveHandler, archive_files, compact
from services.archive_query import export, query
from services.engine import FeedBatch, ProjectionEngine
from tests.contract.test_blob_stores import make_blob_store, s3_bucket  # noqa: F401 (a fixture)
from tests.support import all_facts
from workers.log_tail import LogTail

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 1, 22, 30, tzinfo=UTC)  # the workload crosses days and hours
PREFIX = "archive/v1"
COLUMNS = "amount:double,category:string,qty:int64,vip:bool"


@pytest.fixture(params=["local", "s3", "memory"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return make_blob_store(request.param, tmp_path, request)


@pytest.fixture
def pulse(tmp_path: Path) -> Iterator[Pulse]:
    settings = Settings(store="sqlite", db=str(tmp_path / "pulse.db"), archive="off")
    pulse = bootstrap(settings, create=True)
    yield pulse
    pulse.close()
    drop_tables(settings)


def handler(blobs: BlobStore, max_bytes: int = 3000, **kwargs) -> ArchiveHandler:
    return ArchiveHandler(blobs, prefix=PREFIX, columns=parse_columns(COLUMNS), max_bytes=max_bytes, **kwargs)


def tail(pulse: Pulse, archive: ArchiveHandler, batch_size: int = 37) -> LogTail:
    return LogTail(pulse.store, ProjectionEngine([archive]), batch_size=batch_size)  # type: ignore[arg-type]


def steps(worker: LogTail) -> None:
    """Read everything without the catch-up's final flush (as a worker killed later would)."""
    while worker.step():
        pass


def workload(rng: random.Random, n: int, tag: str) -> list[Event]:
    events = []
    for i in range(n):
        kind = rng.choice(["sale", "sale", "page_view", "stock"])
        late = rng.random() < 0.1
        at = (
            START
            + timedelta(minutes=rng.uniform(0, 180))
            - (timedelta(hours=rng.uniform(1, 30)) if late else timedelta())
        )
        properties = {
            "sale": lambda: {
                "amount": round(rng.uniform(1, 40), 2),
                "category": rng.choice(["coffee", "cake"]),
                "qty": rng.randint(1, 3),
                "vip": rng.random() < 0.2,
            },
            "page_view": lambda: {"path": rng.choice(["/", "/menu"]), "amount": "n/a"},
            "stock": lambda: {"level": rng.randint(0, 50), "category": 7},
        }[kind]()
        events.append(Event(id=f"{tag}{i:04d}", type=kind, occurred_at=at, properties=properties))
    return events


def ingest(pulse: Pulse, events: list[Event], rng: random.Random) -> None:
    for start in range(0, len(events), 25):
        chunk = events[start : start + 25]
        pulse.store.ingest(chunk)
        pulse.store.ingest(rng.sample(chunk, k=min(5, len(chunk))))  # resent: duplicates, stored once


def archived_rows(blobs: BlobStore) -> pa.Table:
    tables = [read_table(blobs.get(key)) for key in live_files(archive_files(blobs, PREFIX))]
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({"id": []})


def assert_exactly_once(pulse: Pulse, blobs: BlobStore) -> None:
    ids = archived_rows(blobs).column("id").to_pylist()
    twice = [i for i, n in Counter(ids).items() if n > 1]
    assert not twice, f"archived more than once: {twice[:5]}"
    assert set(ids) == {f.id for f in all_facts(pulse.store)}


class FlakyBlobs:
    """The blob store failing the ``fail_at``-th Parquet put (a crash mid-flush)."""

    def __init__(self, inner: BlobStore, fail_at: int) -> None:
        self.inner, self.fail_at, self.puts = inner, fail_at, 0
        self.location = inner.location

    def put(self, key: str, data: bytes) -> None:
        if key.endswith(".parquet"):
            self.puts += 1
            if self.puts == self.fail_at:
                raise OSError("disk gone mid-flush")
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def test_every_fact_exactly_once_through_duplicates_redelivery_restarts_and_a_crash_mid_flush(
    pulse: Pulse, blobs: BlobStore
) -> None:
    rng = random.Random(12)
    ingest(pulse, workload(rng, 220, "a"), rng)

    first = handler(blobs, max_bytes=20_000)
    steps(tail(pulse, first))
    head = pulse.store.last_position()
    assert first.position("") == head
    durable = first.state("").position
    assert 0 < durable < head, "some files written, some facts only buffered"

    # Restart mid-buffer: the buffer is gone, the durable checkpoint is where files end.
    again = handler(blobs)
    assert again.position("") == durable
    ingest(pulse, workload(rng, 150, "b"), rng)
    page = pulse.store.read_facts(str(durable), limit=40)
    batch = FeedBatch("", durable + 1, page.events[-1].position or 0, page.events)
    assert again.handle(batch) is True
    assert again.handle(batch) is False  # delivered twice: nothing buffered twice
    steps(tail(pulse, again))

    # A crash mid-flush: some of a flush's files written, then the process dies.
    ingest(pulse, workload(rng, 200, "c"), rng)
    crashing = handler(FlakyBlobs(blobs, fail_at=3), max_bytes=6000)
    crashing.position("")
    with pytest.raises(OSError):
        crashing.handle(FeedBatch("", 1, pulse.store.last_position(), all_facts(pulse.store)))
    assert crashing.state("").pending is not None

    # Restarted with another batch size: the pending range is written again exactly.
    restarted = handler(blobs, max_bytes=10**9)
    tail(pulse, restarted, batch_size=53).catch_up()
    state = restarted.state("")
    assert state.pending is None and state.position == pulse.store.last_position()
    assert_exactly_once(pulse, blobs)
    assert state.events_total >= len(all_facts(pulse.store))  # counts rewrites of a pending range too

    # A fresh worker finds nothing to do.
    assert tail(pulse, handler(blobs)).catch_up() == 0
    assert_exactly_once(pulse, blobs)


def test_the_age_bound_flushes_on_housekeeping(pulse: Pulse, blobs: BlobStore) -> None:
    now = [1000.0]
    archive = handler(blobs, max_bytes=10**9, max_age_seconds=60, clock=lambda: now[0])
    worker = tail(pulse, archive)
    pulse.store.ingest(workload(random.Random(1), 10, "a"))
    steps(worker)
    assert archive_files(blobs, PREFIX) == [] and archive.state("").position == 0
    now[0] += 59
    worker.maintain()
    assert archive.state("").position == 0
    now[0] += 1
    worker.maintain()
    assert archive.state("").position == pulse.store.last_position()
    assert_exactly_once(pulse, blobs)


def test_duckdb_counts_per_type_and_date_equal_the_store_and_compaction_keeps_the_rows(
    pulse: Pulse, blobs: BlobStore, tmp_path: Path
) -> None:
    rng = random.Random(7)
    ingest(pulse, workload(rng, 400, "a"), rng)
    tail(pulse, handler(blobs, max_bytes=2500)).catch_up()
    facts = all_facts(pulse.store)
    expected = Counter((f.type, f.occurred_at.astimezone(UTC).date()) for f in facts)
    sql = "SELECT type, date, count(*) FROM events GROUP BY ALL ORDER BY ALL"
    counted = {(t, d): n for t, d, n in query(blobs, sql, prefix=PREFIX)[1]}
    assert counted == dict(expected)

    before = archived_rows(blobs).sort_by("id")
    files_before = len(archive_files(blobs, PREFIX))
    dates = sorted({d.isoformat() for _, d in expected})

    # A crash between writing a merged file and deleting the small ones: readers skip
    # the covered files, so no row is seen twice.
    class NoDelete(FlakyBlobs):
        def delete(self, key: str) -> None:
            raise OSError("killed before deleting")

    with pytest.raises(OSError):
        compact(NoDelete(blobs, fail_at=0), PREFIX, dates[0])
    assert archived_rows(blobs).sort_by("id").equals(before)
    assert {(t, d): n for t, d, n in query(blobs, sql, prefix=PREFIX)[1]} == dict(expected)

    for date in dates:
        compact(blobs, PREFIX, date)
    after = archived_rows(blobs).sort_by("id")
    assert after.equals(before)
    files = archive_files(blobs, PREFIX)
    assert len(files) < files_before and files == live_files(files)
    hours = Counter(key.rsplit("/", 1)[0] for key in files)
    assert set(hours.values()) == {1}, "one file per hour"
    assert all(compact(blobs, PREFIX, date) == [] for date in dates)  # idempotent
    assert {(t, d): n for t, d, n in query(blobs, sql, prefix=PREFIX)[1]} == dict(expected)

    # Facts archived after the compaction land beside it and are read once.
    ingest(pulse, workload(rng, 50, "z"), rng)
    tail(pulse, handler(blobs)).catch_up()
    assert_exactly_once(pulse, blobs)

    out = tmp_path / "sales.csv"
    n = export(blobs, str(out), "sale", "2026-11-01", "2026-11-02T12:00:00Z", "csv", prefix=PREFIX)
    sales = [f for f in all_facts(pulse.store) if f.type == "sale"]
    low, high = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, 12, tzinfo=UTC)
    assert n == sum(low <= f.occurred_at < high for f in sales) > 0
    assert len(out.read_text().splitlines()) == n + 1


def test_typed_columns_have_their_arrow_types_and_rows_are_sorted(pulse: Pulse, blobs: BlobStore) -> None:
    at = START
    pulse.store.ingest(
        [
            Event(id="s2", type="sale", occurred_at=at, properties={"amount": 3, "category": "cake", "qty": 2}),
            Event(id="s1", type="sale", occurred_at=at, properties={"amount": 2.5, "vip": True, "qty": 1.0}),
            Event(id="s0", type="sale", occurred_at=at - timedelta(minutes=5), properties={"amount": "x", "qty": 1.5}),
            Event(id="s3", type="sale", occurred_at=at, properties={"amount": True, "category": 7, "vip": "yes"}),
        ]
    )
    tail(pulse, handler(blobs)).catch_up()
    (key,) = live_files(archive_files(blobs, PREFIX))
    assert key == f"{PREFIX}/type=sale/date=2026-11-01/hour=22/log-1-4.parquet"
    table = read_table(blobs.get(key))
    types = {field.name: field.type for field in table.schema}
    assert types == {
        "id": pa.string(), "type": pa.string(), "occurred_at": pa.timestamp("us", tz="UTC"),
        "received_at": pa.timestamp("us", tz="UTC"), "source": pa.string(), "properties": pa.string(),
        "amount": pa.float64(), "category": pa.string(), "qty": pa.int64(), "vip": pa.bool_(),
    }  # fmt: skip
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == ["s0", "s1", "s2", "s3"]  # by occurredAt, then id
    assert [r["amount"] for r in rows] == [None, 2.5, 3.0, None]
    assert [r["category"] for r in rows] == [None, None, "cake", "7"]
    assert [r["qty"] for r in rows] == [None, 1, 2, None]
    assert [r["vip"] for r in rows] == [None, True, None, None]
    assert rows[2]["properties"] == '{"amount":3,"category":"cake","qty":2}'


def test_properties_named_by_metrics_and_gauges_get_typed_columns(pulse: Pulse, blobs: BlobStore) -> None:
    defs.define_metric(pulse.store, defs.validate_metric("revenue", "sale", "sum", "total", ["region", "till"]))
    defs.define_metric(pulse.store, defs.validate_metric("orders", "sale", "count", None, ["channel"]))
    defs.define_metric(pulse.store, defs.validate_metric("units", "sale", "sum", "qty", ["category"]))
    defs.define_gauge(pulse.store, defs.validate_gauge("stock", "stock_level", "level", "sku"))
    pulse.store.ingest(
        [
            Event(id="a", type="sale", occurred_at=START, properties={"total": 4, "region": "eu", "till": 12}),
            Event(id="b", type="sale", occurred_at=START, properties={"total": "n/a", "channel": "web", "qty": 3}),
            Event(id="c", type="stock_level", occurred_at=START, properties={"level": 7.5, "sku": 42}),
        ]
    )
    worker = tail(pulse, handler(blobs, definitions=pulse.store))
    worker.catch_up()
    tables = {k.split("/")[2]: read_table(blobs.get(k)) for k in live_files(archive_files(blobs, PREFIX))}
    types = {field.name: field.type for field in tables["type=sale"].schema}
    assert {name: types[name] for name in ("total", "qty", "region", "till", "channel", "category")} == {
        "total": pa.float64(),  # a metric's value
        "qty": pa.int64(),  # PULSE_ARCHIVE_COLUMNS says int64: the setting wins over the definition
        "region": pa.string(),  # dimensions, as dimensions compare
        "till": pa.string(),
        "channel": pa.string(),
        "category": pa.string(),
    }
    assert types["level"] == pa.float64() and types["sku"] == pa.string()  # a gauge's value and key
    sales = tables["type=sale"].to_pylist()
    assert [(r["total"], r["region"], r["till"], r["channel"]) for r in sales] == [
        (4.0, "eu", "12", None),
        (None, None, None, "web"),
    ]
    (stock,) = tables["type=stock_level"].to_pylist()
    assert (stock["level"], stock["sku"]) == (7.5, "42")

    # A metric defined later types the files written after it.
    defs.define_metric(pulse.store, defs.validate_metric("tips", "sale", "sum", "tip", []))
    pulse.store.ingest([Event(id="d", type="sale", occurred_at=START, properties={"tip": 2})])
    worker.catch_up()
    newest = read_table(blobs.get(max(live_files(archive_files(blobs, f"{PREFIX}/type=sale")))))
    assert newest.schema.field("tip").type == pa.float64() and newest.column("tip").to_pylist() == [2.0]


def test_the_same_range_makes_the_same_bytes(pulse: Pulse, blobs: BlobStore) -> None:
    pulse.store.ingest(workload(random.Random(3), 60, "a"))
    tail(pulse, handler(blobs)).catch_up()
    written = {key: blobs.get(key) for key in archive_files(blobs, PREFIX)}
    blobs.delete(state_key(PREFIX, "archive", ""))  # as if the checkpoint were lost
    tail(pulse, handler(blobs)).catch_up()
    assert {key: blobs.get(key) for key in archive_files(blobs, PREFIX)} == written


# --- wiring --------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_the_backends_worker_archives_and_a_clean_stop_flushes(store: str, tmp_path: Path) -> None:
    settings = Settings(store=store, db=str(tmp_path / "shop.db"), archive_columns="amount:double")
    pulse = bootstrap(settings, create=True)
    try:
        assert "archive" in pulse.engine().names
        pulse.store.ingest(workload(random.Random(5), 30, "a"))
        worker = pulse.worker(WorkerOptions(batch_size=7))
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,))
        thread.start()
        deadline = time.monotonic() + 10
        while worker.engine.start("") < pulse.store.last_position() and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        thread.join(10)
        from bootstrap.archive import blob_store

        blobs = blob_store(settings)
        if store == "sqlite":
            assert blobs.location == str(tmp_path / "shop.archive")
        ids = [
            i for key in live_files(archive_files(blobs)) for i in read_table(blobs.get(key)).column("id").to_pylist()
        ]
        assert sorted(ids) == sorted(f.id for f in all_facts(pulse.store))
    finally:
        pulse.close()
        drop_tables(settings)


@pytest.mark.parametrize("processes", [["--one-process"], []], ids=["one process", "archive apart"])
def test_sigterm_on_pulse_worker_flushes_the_buffer(tmp_path: Path, processes: list[str]) -> None:
    """Whether the archive runs on the worker's engine or in a process of its own (the
    default: workers/lanes.py), a clean stop writes out what it buffered."""
    db = str(tmp_path / "pulse.db")
    settings = Settings(store="sqlite", db=db)
    pulse = bootstrap(settings, create=True)
    pulse.store.ingest(workload(random.Random(9), 50, "a"))
    head = pulse.store.last_position()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PULSE_ARCHIVE_MAX_AGE_SECONDS": "3600"}
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--db", db, *processes], cwd=ROOT, env=env, stderr=log_file
        )
    try:
        deadline = time.monotonic() + 30
        # Every read model has read the log, the archive included (its own log line when apart).
        while time.monotonic() < deadline and not (
            pulse.views.checkpoint("recent-events").position == head
            and re.search(r"caught up with the log at position \d+ in .*archive", log_path.read_text())
        ):
            time.sleep(0.05)
        from bootstrap.archive import blob_store

        archive = ArchiveHandler(blob_store(settings))
        assert archive.state("").position == 0  # buffered only
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(40) == 0, log_path.read_text()
        assert archive.state("").position == head, log_path.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
        pulse.close()


def test_the_archive_commands(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli import main

    db = str(tmp_path / "pulse.db")
    settings = Settings(store="sqlite", db=db, archive_max_bytes=1)  # a file per batch
    pulse = bootstrap(settings, create=True)
    at = datetime(2026, 11, 1, 5, tzinfo=UTC)
    pulse.store.ingest([Event(type="sale", occurred_at=at + timedelta(minutes=i), properties={}) for i in range(90)])
    # Small batches, so that each hour gets several files to compact.
    pulse.worker(WorkerOptions(batch_size=10, catch_up_batch_size=10)).catch_up()
    pulse.close()
    runner = CliRunner()
    sql = "SELECT hour, count(*) AS n FROM events GROUP BY hour ORDER BY hour"
    assert (
        runner.invoke(main, ["archive", "query", sql, "--db", db, "--format", "csv"]).output == "hour,n\n05,60\n06,30\n"
    )
    done = runner.invoke(main, ["archive", "compact", "--date", "2026-11-01", "--db", db])
    assert done.exit_code == 0 and done.output.endswith("2 hours compacted\n")
    assert (
        runner.invoke(main, ["archive", "compact", "--date", "2026-11-01", "--db", db]).output == "0 hours compacted\n"
    )
    assert (
        runner.invoke(main, ["archive", "query", sql, "--db", db, "--format", "csv"]).output == "hour,n\n05,60\n06,30\n"
    )
    out = str(tmp_path / "s.parquet")
    args = ["archive", "export", "--type", "sale", "--from", "2026-11-01T05:30:00Z", "--to", "2026-11-01T06:10:00Z"]
    exported = runner.invoke(main, [*args, "--format", "parquet", "-o", out, "--db", db])
    assert exported.output == f"40 events written to {out}\n"
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 40
    bad = runner.invoke(main, ["archive", "query", "selec", "--db", db])
    assert bad.exit_code == 1 and "syntax error" in bad.output


def test_facts_buffered_before_a_definition_change_get_the_typed_columns_of_the_flush() -> None:
    """The buffer holds Arrow columns built with the columns of their batch; a metric defined
    meanwhile still gives every fact of the flush its typed column, read from the properties
    (a 2**70 amount stays exact in the JSON column)."""
    from domain.events import RecordedEvent
    from projections.archive import ArchiveColumn, files_of_rows, retyped, rows_of

    at = 1_700_000_000_000_000
    facts = [
        RecordedEvent.at_micros(f"s{i}", "sale", at + i * 900_000_000, {"amount": a}, None, "$facts", None, i + 1, at)
        for i, a in enumerate([1.5, 2, "x", 2**70, None])
    ]
    amount = (ArchiveColumn("amount", "double"),)
    early, late = rows_of(facts[:3]), rows_of(facts[3:], amount)
    written = files_of_rows([retyped(early, amount), late], "", 1, 5)
    assert written == files_of_rows([rows_of(facts, amount)], "", 1, 5)  # as if built after the change
    rows = pa.concat_tables([read_table(data) for data in written.values()])
    assert rows.column("amount").to_pylist() == [1.5, 2.0, None, float(2**70), None]
    assert '{"amount":1180591620717411303424}' in rows.column("properties").to_pylist()
