"""The feed driver of a log with one global order (the embedded SQLite store): tails it
by position and hands each page to the projection engine.

Each step reads up to ``batch_size`` facts (``catch_up_batch_size`` while further
behind) after the lowest checkpoint of the engine's ready projections; each projection
applies what is past its own checkpoint, with the checkpoint move in one transaction.
When there is nothing new it sleeps
``idle_seconds`` (20 ms), so a posted event is visible in queries well within the 250 ms
freshness target. Idle polls ask the log only for its last position, which costs one
index lookup.

Killed at any point (even ``kill -9``), it resumes from the committed checkpoints and ends
exactly where an uninterrupted run would. Housekeeping (retention) runs every
``maintain_seconds``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Protocol

from domain.clock import SYSTEM_CLOCK, Clock
from domain.errors import StoreUnavailable
from domain.ports import EventStore, PositionedLog
from services.engine import FeedBatch, ProjectionEngine
from services.gc_pause import collection_paused

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
IDLE_SECONDS = 0.02
MAINTAIN_SECONDS = 300.0
RETRY_SECONDS = 1.0


class PositionedEventStore(EventStore, PositionedLog, Protocol):
    """An event store whose facts have one global order."""


class LogTail:
    def __init__(
        self,
        events: PositionedEventStore,
        engine: ProjectionEngine,
        batch_size: int = BATCH_SIZE,
        idle_seconds: float = IDLE_SECONDS,
        maintain_seconds: float = MAINTAIN_SECONDS,
        clock: Clock = SYSTEM_CLOCK,
        catch_up_batch_size: int | None = None,
    ) -> None:
        self.events = events
        self.engine = engine
        self.batch_size = batch_size
        # Larger pages while far behind: fewer commits and fewer rows rewritten per fact
        # (the recent-events feed keeps its newest 1000 per batch). At the tail, pages stay
        # small so that a fresh event is applied at once.
        self.catch_up_batch_size = max(batch_size, catch_up_batch_size or batch_size)
        self.idle_seconds = idle_seconds
        self.maintain_seconds = maintain_seconds
        self.clock = clock
        self._maintained_at: float | None = None

    def step(self) -> int:
        """One iteration: prepare the projections, then hand them one page of the log.
        Returns how many facts it read (0: nothing new)."""
        with collection_paused():  # services/gc_pause.py: a fifth to a third of catch-up
            return self._step()

    def _step(self) -> int:
        self.engine.prepare()
        position = self.engine.start("")
        head = self.events.last_position()
        if head <= position:
            return 0
        limit = self.catch_up_batch_size if head - position > self.batch_size else self.batch_size
        page = self.events.read_facts(str(position) if position else None, limit=limit)
        if not page.events:
            # Only aggregate events (definitions, keys) since the checkpoint: every position
            # up to the head read before was committed, so move past them and lag reads 0.
            self.engine.handle(FeedBatch("", position + 1, head, ()))
            return 0
        upto = page.events[-1].position
        assert upto is not None  # a positioned log positions every fact
        self.engine.handle(FeedBatch("", position + 1, upto, page.events))
        return len(page.events)

    def catch_up(self) -> int:
        """Project until nothing is left, buffers written out; returns how many facts were read."""
        total = 0
        while True:
            read = self.step()
            if not read:
                self.engine.flush()
                return total
            total += read

    def maintain(self) -> None:
        self.engine.maintain(self.clock.now())
        self._maintained_at = time.monotonic()

    def _maybe_maintain(self) -> None:
        if self._maintained_at is None or time.monotonic() - self._maintained_at >= self.maintain_seconds:
            self.maintain()

    def run(self, stop: threading.Event | None = None, parent_pid: int | None = None) -> None:
        """Project until ``stop`` is set (or the process ``parent_pid`` is gone)."""
        stop = stop or threading.Event()
        try:
            self._run(stop, parent_pid)
        finally:
            try:
                self.engine.flush()  # a clean stop (SIGTERM, Ctrl-C): buffers go to their files
            except StoreUnavailable as exc:
                log.warning("store unavailable on stop; buffers are re-read on restart: %s", exc)

    def _run(self, stop: threading.Event, parent_pid: int | None) -> None:
        names = ", ".join(self.engine.names)
        log.info("projection worker started at position %d (%s)", self.engine.lowest(""), names)
        started, caught_up = time.monotonic(), False
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.info("parent process %d is gone; stopping", parent_pid)
                return
            try:
                self._maybe_maintain()
                if not self.step():
                    if not caught_up:  # once: how long the backlog took, for an operator watching
                        caught_up = True
                        position, took = self.engine.lowest(""), time.monotonic() - started
                        log.info("caught up with the log at position %d in %.1f s (%s)", position, took, names)
                    stop.wait(self.idle_seconds)
            except StoreUnavailable as exc:
                log.warning("store unavailable, retrying in %.0f s: %s", RETRY_SECONDS, exc)
                stop.wait(RETRY_SECONDS)
            except Exception:
                # Nothing was committed for the failed step; keep the worker alive and retry.
                log.exception("projection step failed; retrying in %.0f s", RETRY_SECONDS)
                stop.wait(RETRY_SECONDS)
        log.info("projection worker stopped at position %d", self.engine.lowest(""))
