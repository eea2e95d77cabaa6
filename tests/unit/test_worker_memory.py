"""api/worker_memory.py: a gunicorn worker starts every request thread at boot and hands
freed memory back to the kernel, so its resident memory does not creep up under load."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from api.worker_memory import malloc_trim, post_worker_init, start_every_thread, trim_periodically

ROOT = Path(__file__).resolve().parents[2]


def pool_threads(pool: ThreadPoolExecutor) -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(pool._thread_name_prefix))


def test_every_thread_of_the_pool_runs_before_the_first_request() -> None:
    pool = ThreadPoolExecutor(max_workers=12, thread_name_prefix="test-boot-pool")
    try:
        start_every_thread(pool, 12)
        assert pool_threads(pool) == 12
        assert pool.submit(lambda: 42).result(timeout=5) == 42  # and they still serve
    finally:
        pool.shutdown()


def test_the_hook_starts_a_gthread_workers_threads_and_leaves_other_workers_alone() -> None:
    pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="test-hook-pool")
    try:
        post_worker_init(SimpleNamespace(tpool=pool, cfg=SimpleNamespace(threads=6)))
        assert pool_threads(pool) == 6
    finally:
        pool.shutdown()
    post_worker_init(SimpleNamespace(cfg=SimpleNamespace(threads=6)))  # e.g. a sync worker: no pool


def test_trimming_runs_on_its_own_thread_until_stopped() -> None:
    calls = threading.Semaphore(0)
    stop = trim_periodically(lambda: calls.release() or 0, every=0.01)
    try:
        assert all(calls.acquire(timeout=5) for _ in range(3))
    finally:
        stop.set()


# Freed small blocks between live ones stay in glibc's heap (RSS unchanged) until trimmed.
_FRAGMENTED = textwrap.dedent(
    """
    import sys
    from api.worker_memory import malloc_trim

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    blocks = [bytearray(60_000) for _ in range(3000)]  # under the mmap threshold: in the heap
    del blocks[:-1]  # all but the last, which pins the heap's top
    before = rss_mb()
    malloc_trim()()
    print(before - rss_mb())
    """
)


@pytest.mark.skipif(malloc_trim() is None, reason="no malloc_trim in this C library (not glibc)")
def test_trimming_gives_freed_memory_back_to_the_kernel() -> None:
    out = subprocess.run([sys.executable, "-c", _FRAGMENTED], cwd=ROOT, capture_output=True, text=True, check=True)
    released = float(out.stdout)
    assert released > 100, f"only {released:.0f} MB of the 170 MB freed was given back"


# Each new thread's first allocation opens a heap of its own until glibc's limit; malloc_stats
# prints one "Arena N:" block per heap.
_THREADS_ALLOCATING = textwrap.dedent(
    """
    import ctypes, sys, threading
    from api.worker_memory import limit_arenas

    if sys.argv[1] == "limited":
        assert limit_arenas(2)
    everyone = threading.Barrier(8)

    def allocate():
        block = bytearray(100_000)  # from a heap, under the mmap threshold
        everyone.wait()

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctypes.CDLL(None).malloc_stats()
    """
)


@pytest.mark.skipif(malloc_trim() is None, reason="no mallopt in this C library (not glibc)")
def test_request_threads_share_a_few_heaps() -> None:
    def heaps(mode: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", _THREADS_ALLOCATING, mode], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return run.stderr.count("Arena ")

    assert heaps("limited") <= 2
    assert heaps("unlimited") > 2  # the test can tell
