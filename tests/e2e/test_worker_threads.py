"""End to end: each gunicorn worker of `pulse serve` runs all its request threads from
boot (api/worker_memory.py), so a burst late in a run adds no threads and no memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.harness import pulse_serve, wait_until
from tests.e2e.test_serve_live import children, command_line

pytestmark = pytest.mark.serves

THREADS = 12


def threads_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return int(next(line for line in status if line.startswith("Threads:")).split()[1])
    except OSError:  # gone meanwhile
        return 0


def test_each_worker_starts_every_request_thread_at_boot(tmp_path: Path) -> None:
    args = ("--db", str(tmp_path / "pulse.db"), "--workers", "2", "--threads", str(THREADS), "--no-worker")
    with pulse_serve(tmp_path, *args) as url:
        port = url.rsplit(":", 1)[1]
        # The gunicorn master is `pulse serve` itself, this test's child; its workers are forks of it.
        master = next(p for p in children(os.getpid()) if f" serve --port {port} " in command_line(p))

        def booted_workers() -> list[int]:
            forks = [p for p in children(master) if command_line(p) == command_line(master)]
            # Booted: its threads are running. Without the hook a worker that has answered at
            # most the health check runs one request thread, and never more while idle.
            return [pid for pid in forks if threads_of(pid) > THREADS]

        wait_until(lambda: len(booted_workers()) == 2, "both workers running every request thread")
