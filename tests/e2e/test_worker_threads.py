"""End to end: each gunicorn worker of `pulse serve` runs all its request threads from
boot (api/worker_memory.py), so a burst late in a run adds no threads and no memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.harness import pulse_serve, wait_until

pytestmark = pytest.mark.serves

THREADS = 12


def server_processes(directory: Path) -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command line) of the processes running in ``directory``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/cwd") != str(directory):
                continue
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                found[int(entry)] = (parent, cmdline.read())
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Threads:")).split()[1])


def test_each_worker_starts_every_request_thread_at_boot(tmp_path: Path) -> None:
    args = ("--db", str(tmp_path / "pulse.db"), "--workers", "2", "--threads", str(THREADS), "--no-worker")
    with pulse_serve(tmp_path, *args):

        def booted_workers() -> list[int]:
            processes = server_processes(tmp_path.resolve())
            # The master is the one whose parent is not ours; its workers are forks of it.
            master = next(pid for pid, (parent, _) in processes.items() if parent not in processes)
            forks = [
                pid for pid, (parent, cmd) in processes.items() if parent == master and cmd == processes[master][1]
            ]
            # Booted: its threads are running. Without the hook a worker that has answered at
            # most the health check runs one request thread, and never more while idle.
            return [pid for pid in forks if threads_of(pid) > THREADS]

        wait_until(lambda: len(booted_workers()) == 2, "both workers running every request thread")
