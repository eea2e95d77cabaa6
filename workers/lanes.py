"""The archive in a process of its own, beside the other read models (``pulse worker``).

The archive's work per fact (Arrow columns, then Parquet files) is a quarter of a catch-up
on one core, and its flushes (up to ``PULSE_ARCHIVE_MAX_BYTES`` of facts at once) held the
counters still while they ran. In a second process it reads the log through its own feed
driver and checkpoint, on the machine's other core: the counters, gauges, recent events
and alerts no longer wait for it, and a catch-up ends when the slower of the two does.
Threads cannot do this: Python's ``sqlite3`` hands the GIL over for every row it reads,
so a reader beside a busy thread crawls.

The child is started with ``spawn`` (a fresh interpreter: no SQLite connection or lock
of the parent's crosses into it) and watches the parent's pid, so a parent killed with
``kill -9`` does not leave it running; a child that dies is started again. Each process
resumes from its own checkpoints, so either may be killed at any point.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from domain.settings import Settings
from services.engine import ProjectionEngine
from workers.log_tail import LogTail

if TYPE_CHECKING:
    from bootstrap import WorkerOptions

log = logging.getLogger(__name__)

RESTART_SECONDS = 1.0
#: A child that dies within this of its start waits twice as long before the next, up to
#: ``MAX_RESTART_SECONDS`` (one that cannot start at all, say an unreadable archive folder,
#: must not be started every second forever).
QUICK_DEATH_SECONDS = 60.0
MAX_RESTART_SECONDS = 60.0
STOP_SECONDS = 30.0  # a clean stop flushes the buffer: up to PULSE_ARCHIVE_MAX_BYTES of Parquet


def run_archive_lane(settings: Settings, options: WorkerOptions, catch_up: bool, parent_pid: int) -> None:
    """The child's body: the archive alone on its own feed driver, until the log's end
    (``catch_up``) or until SIGTERM or the parent's end."""
    from bootstrap import bootstrap

    if options.child_setup is not None:
        options.child_setup()
    pulse = bootstrap(settings)
    try:
        worker = pulse.archive_worker(options)
        if catch_up:
            worker.catch_up()
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
        worker.run(stop, parent_pid=parent_pid)
    finally:
        pulse.close()


class ArchiveLane:
    """The child process running ``run_archive_lane``."""

    def __init__(self, settings: Settings, options: WorkerOptions) -> None:
        self.settings = settings
        self.options = replace(options, clock=None)  # the archive's age bound runs on the monotonic clock
        self.process: multiprocessing.process.BaseProcess | None = None
        self.started_at = 0.0

    def start(self, catch_up: bool = False) -> None:
        self.started_at = time.monotonic()
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(
            target=run_archive_lane,
            args=(self.settings, self.options, catch_up, os.getpid()),
            name="pulse-archive",
            daemon=True,
        )
        self.process.start()

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def wait(self) -> int | None:
        """Wait for the child to end; its exit code."""
        if self.process is None:
            return None
        self.process.join()
        return self.process.exitcode

    def stop(self) -> None:
        """SIGTERM (the child flushes its buffer), then SIGKILL after ``STOP_SECONDS``."""
        if self.process is None:
            return
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(STOP_SECONDS)
            if self.process.is_alive():
                log.warning("archive process %s did not stop in %.0f s; killing it", self.process.pid, STOP_SECONDS)
                self.process.kill()
        self.process.join()


class LanedWorker:
    """A feed driver (``main``) for every read model but the archive, and the archive's
    own driver in a child process (``lane``)."""

    def __init__(self, main: LogTail, lane: ArchiveLane) -> None:
        self.main = main
        self.lane = lane

    @property
    def engine(self) -> ProjectionEngine:
        return self.main.engine

    def catch_up(self) -> int:
        """Both processes up to the log's end, buffers written out; how many facts this
        one read. Raises when the archive's process failed."""
        self.lane.start(catch_up=True)
        try:
            read = self.main.catch_up()
        except BaseException:
            self.lane.stop()  # not a wait for its whole catch-up (Ctrl-C, a store gone)
            raise
        code = self.lane.wait()
        if code != 0:
            raise RuntimeError(f"the archive's process failed (exit code {code}); its log says why")
        return read

    def run(self, stop: threading.Event | None = None, parent_pid: int | None = None) -> None:
        stop = stop or threading.Event()
        self.lane.start()
        watcher = threading.Thread(target=self._keep_lane, args=(stop,), name="archive-lane", daemon=True)
        watcher.start()
        try:
            self.main.run(stop, parent_pid=parent_pid)
        finally:
            stop.set()
            watcher.join()
            self.lane.stop()

    def _keep_lane(self, stop: threading.Event) -> None:
        """Start the child again when it dies (it resumes from its checkpoint), after
        ``RESTART_SECONDS``, twice as long after each quick death."""
        delay = RESTART_SECONDS
        while not stop.wait(RESTART_SECONDS):
            if self.lane.alive():
                continue
            code = self.lane.wait()
            quick = time.monotonic() - self.lane.started_at < QUICK_DEATH_SECONDS
            delay = min(delay * 2, MAX_RESTART_SECONDS) if quick else RESTART_SECONDS
            log.warning("archive process ended (exit code %s); starting it again in %.1f s", code, delay)
            if stop.wait(delay):
                return
            self.lane.start()
