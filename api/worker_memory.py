"""A gunicorn worker's resident memory held flat under steady load.

Two things made a worker's RSS creep up for tens of minutes of a steady soak although the
live Python objects stayed level:

- gthread's pool starts a thread only when every running one is busy, so a burst minutes
  into a run adds threads (each with its stack, its malloc arena and its SQLite
  connections). Starting them all when the worker boots makes that cost a step at start,
  not a slope.
- glibc keeps what the many threads free in their heaps (arenas) instead of handing it back,
  so fragmentation reads as growth. The threads share ``MALLOC_ARENAS`` heaps instead of
  one each, and ``malloc_trim(0)`` returns the free pages of every heap to the kernel;
  once a ``TRIM_SECONDS`` it costs a few milliseconds.

``post_worker_init`` is gunicorn's hook: `pulse serve` installs it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

TRIM_SECONDS = 30.0
#: Heaps the request threads share. glibc gives each new thread a heap of its own, up to 8 per
#: core: 16 heaps for 68 threads here, each keeping its own free fragments. Threads mostly run
#: one at a time under the GIL, so sharing two costs no measurable speed (docs/benchmarks.md).
MALLOC_ARENAS = 2
_START_TIMEOUT = 10.0
_M_ARENA_MAX = -8  # glibc's malloc.h


def start_every_thread(pool: ThreadPoolExecutor, threads: int) -> None:
    """Have ``pool`` start its ``threads`` threads now: each task holds its thread until all
    are running, so every submit finds no idle thread and starts one."""
    everyone = threading.Barrier(threads + 1)

    def hold() -> None:
        # A thread that did not start in time starts later, when a request needs it.
        with contextlib.suppress(threading.BrokenBarrierError):
            everyone.wait(_START_TIMEOUT)

    for _ in range(threads):
        pool.submit(hold)
    hold()


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (it has ``malloc_trim`` and ``mallopt``); None elsewhere
    (musl, macOS), where these tunings are left out."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    except (AttributeError, OSError, TypeError):
        return None
    return libc


def malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)``, or None without glibc."""
    libc = _glibc()
    return None if libc is None else lambda: libc.malloc_trim(0)


def trim_periodically(trim: Callable[[], int], every: float = TRIM_SECONDS) -> threading.Event:
    """Call ``trim`` every ``every`` seconds on a daemon thread; set the returned event to stop."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every):
            trim()

    threading.Thread(target=run, name="pulse-malloc-trim", daemon=True).start()
    return stop


def limit_arenas(arenas: int) -> bool:
    """glibc's ``mallopt(M_ARENA_MAX, arenas)``: threads that allocate for the first time after
    it share that many heaps. False without glibc."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, arenas))


def post_worker_init(worker: Any) -> None:
    """gunicorn hook: request threads sharing few heaps, all started now; freed memory
    returned periodically."""
    limit_arenas(MALLOC_ARENAS)
    pool = getattr(worker, "tpool", None)  # gthread's; other worker classes have none
    if isinstance(pool, ThreadPoolExecutor):
        start_every_thread(pool, worker.cfg.threads)
    trim = malloc_trim()
    if trim is not None:
        trim_periodically(trim)
