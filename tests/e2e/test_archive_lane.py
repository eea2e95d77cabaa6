"""The archive in a process of its own (workers/lanes.py, what `pulse worker` runs on SQLite):
a catch-up writes the same files and counters as one process does, a killed archive process
is started again and loses or doubles nothing, and it ends with the worker that started it,
even one killed with kill -9."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bootstrap import Pulse, WorkerOptions, bootstrap, drop_tables
from bootstrap.archive import blob_store
from domain import metrics as defs
from domain.settings import Settings
from projections.archive import live_files, read_table
from services.archive import ArchiveHandler, archive_files
from tests.contract.test_archive import workload
from tests.e2e.test_serve_live import alive, children, command_line
from tests.support import all_facts
from workers.lanes import LanedWorker

ROOT = Path(__file__).resolve().parents[2]
REVENUE = defs.validate_metric("revenue", "sale", "sum", "amount", ["category"])


def shop(directory: Path, events: int = 400) -> Pulse:
    pulse = bootstrap(Settings(store="sqlite", db=str(directory / "pulse.db")), create=True)
    defs.define_metric(pulse.store, REVENUE)
    pulse.store.ingest(workload(random.Random(4), events, "a"))
    return pulse


def archived(pulse: Pulse) -> dict[str, bytes]:
    blobs = blob_store(pulse.settings)
    return {key: blobs.get(key) for key in archive_files(blobs)}


def archived_ids(pulse: Pulse) -> list[str]:
    blobs = blob_store(pulse.settings)
    tables = [read_table(blobs.get(key)) for key in live_files(archive_files(blobs))]
    return sorted(i for table in tables for i in table.column("id").to_pylist())


def revenue(pulse: Pulse) -> list:
    # Days: kept forever, where the workload's fixed dates pass out of the hours' 400 days.
    return pulse.views.read_counters("revenue", "day", 0, 2**40, group_by=0)


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_catch_up_with_the_archive_apart_writes_what_one_process_writes(tmp_path: Path) -> None:
    one = shop(tmp_path / "one")
    (tmp_path / "apart").mkdir()
    with sqlite3.connect(one.settings.db) as source:  # the same facts, received at the same times
        source.execute("VACUUM INTO ?", (str(tmp_path / "apart" / "pulse.db"),))
    apart = bootstrap(Settings(store="sqlite", db=str(tmp_path / "apart" / "pulse.db")))
    try:
        assert one.worker(WorkerOptions(batch_size=53)).catch_up() == 400
        worker = apart.worker(WorkerOptions(batch_size=53, archive_process=True))
        assert isinstance(worker, LanedWorker) and "archive" not in worker.engine.names
        assert worker.catch_up() == 400
        assert archived(apart) == archived(one) != {}  # the same keys, the same bytes
        assert archived_ids(apart) == sorted(f.id for f in all_facts(apart.store))
        assert revenue(apart) == revenue(one) != []
    finally:
        for pulse in (one, apart):
            pulse.close()
            drop_tables(pulse.settings)


def test_a_killed_archive_process_is_started_again_and_nothing_is_lost_or_doubled(tmp_path: Path) -> None:
    pulse = shop(tmp_path)
    settings = pulse.settings
    worker = pulse.worker(WorkerOptions(batch_size=50, archive_process=True))
    assert isinstance(worker, LanedWorker)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        wait_for(worker.lane.alive)
        first = worker.lane.process.pid
        os.kill(first, signal.SIGKILL)  # its buffer is gone with it: it re-reads from its checkpoint
        wait_for(lambda: worker.lane.alive() and worker.lane.process.pid != first)
        pulse.store.ingest(workload(random.Random(5), 300, "b"))
        wait_for(lambda: worker.engine.start("") == pulse.store.last_position())
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive() and not worker.lane.alive()
    # What the restarted process had not read yet, a later catch-up archives: exactly once.
    pulse.worker(WorkerOptions(batch_size=50, archive_process=True)).catch_up()
    ids = archived_ids(pulse)
    assert ids == sorted(f.id for f in all_facts(pulse.store)) and len(ids) == 700
    assert ArchiveHandler(blob_store(settings)).state("").position == pulse.store.last_position()
    pulse.close()
    drop_tables(settings)


def test_the_archive_process_ends_with_a_worker_killed_with_kill_9(tmp_path: Path) -> None:
    pulse = shop(tmp_path, events=50)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--db", pulse.settings.db], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
    )
    try:

        def archive_process() -> list[int]:
            return [pid for pid in children(worker.pid) if "spawn_main" in command_line(pid)]

        wait_for(lambda: bool(archive_process()))
        (lane,) = archive_process()
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        wait_for(lambda: not alive(lane))
    finally:
        if worker.poll() is None:
            worker.kill()
        pulse.close()
        drop_tables(pulse.settings)


def test_an_archive_process_that_fails_fails_the_catch_up(tmp_path: Path) -> None:
    """As on one engine (where the error itself is raised): a catch-up is not done until
    both processes are; the counters were still written by the worker's own engine."""
    pulse = shop(tmp_path, events=20)
    Path(tmp_path / "pulse.archive").write_text("a file where the archive's folder should be")
    try:
        with pytest.raises(RuntimeError, match="archive's process failed"):
            pulse.worker(WorkerOptions(archive_process=True)).catch_up()
        assert revenue(pulse) != []
    finally:
        pulse.close()
        drop_tables(pulse.settings)
