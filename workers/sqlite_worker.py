"""The projection worker of the embedded setup: tails the SQLite log by position.

Each step reads up to ``batch_size`` facts after the checkpoint, projects them and
applies the changes with the new checkpoint in one transaction of the view db
(``ViewStore.apply``). When there is nothing new it sleeps ``idle_seconds`` (20 ms), so a
posted event is visible in queries well within the 250 ms freshness target. Idle polls
ask the log only for its last position, which costs one index lookup.

Killed at any point (even ``kill -9``), it resumes from the last committed checkpoint and
ends exactly where an uninterrupted run would. Retention is applied every
``prune_seconds``, its horizons measured from ``clock``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence

from domain.clock import SYSTEM_CLOCK, Clock
from domain.errors import StoreUnavailable
from domain.events import RecordedEvent
from domain.metrics import RESOLUTIONS
from domain.ports import CheckpointConflict, EventStore, PositionedLog, ViewStore
from domain.settings import Settings
from projections.buckets import Bucketing, Retention
from workers.projection_runner import ProjectionRunner

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
IDLE_SECONDS = 0.02
PRUNE_SECONDS = 300.0
RETRY_SECONDS = 1.0


class SqliteWorker:
    def __init__(
        self,
        events: EventStore,
        views: ViewStore,
        bucketing: Bucketing,
        retention: Retention | None = None,
        batch_size: int = BATCH_SIZE,
        idle_seconds: float = IDLE_SECONDS,
        prune_seconds: float = PRUNE_SECONDS,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.events = events
        self.views = views
        self.runner = ProjectionRunner(events, views, bucketing)
        self.retention = retention or Retention()
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.prune_seconds = prune_seconds
        self.clock = clock
        self._pruned_at: float | None = None
        self._checkpoint = self.runner.checkpoint()

    def _history(self, upto: int) -> Iterator[Sequence[RecordedEvent]]:
        """Facts at positions ``<= upto``, in pages."""
        cursor = None
        while True:
            page = self.events.read_facts(cursor, limit=self.batch_size)
            facts = [event for event in page.events if event.position is not None and event.position <= upto]
            if facts:
                yield facts
            if len(facts) < len(page.events) or not page.events:
                return
            cursor = page.cursor

    def step(self) -> int:
        """One iteration: sync definitions, then project one batch. Returns how many
        facts it applied (0: nothing new)."""
        if self.runner.sync_definitions(self._checkpoint, self._history) is not None:
            self._checkpoint = self.runner.checkpoint()
        position = self._checkpoint.position
        head = self.events.last_position() if isinstance(self.events, PositionedLog) else None
        if head is not None and head <= position:
            return 0
        page = self.events.read_facts(str(position) if position else None, limit=self.batch_size)
        if not page.events:
            if head is not None:
                # Only aggregate events (definitions, keys) since the checkpoint: every position
                # up to the head read before was committed, so move past them and lag reads 0.
                self.runner.process((), after=position, upto=head)
                self._checkpoint = self.runner.checkpoint()
            return 0
        upto = page.events[-1].position
        assert upto is not None  # the SQLite log positions every fact
        self.runner.process(page.events, after=position, upto=upto)
        self._checkpoint = self.runner.checkpoint()
        return len(page.events)

    def catch_up(self) -> int:
        """Project until nothing is left; returns how many facts it applied."""
        total = 0
        while True:
            applied = self.step()
            if not applied:
                return total
            total += applied

    def prune(self) -> int:
        now = self.clock.now()
        deleted = 0
        for resolution in RESOLUTIONS:
            horizon = self.retention.horizon(resolution, now)
            if horizon is not None:
                deleted += self.views.prune(resolution, horizon)
        self._pruned_at = time.monotonic()
        return deleted

    def _maybe_prune(self) -> None:
        if self._pruned_at is None or time.monotonic() - self._pruned_at >= self.prune_seconds:
            deleted = self.prune()
            if deleted:
                log.info("retention: deleted %d counter cells", deleted)

    def run(self, stop: threading.Event | None = None, parent_pid: int | None = None) -> None:
        """Project until ``stop`` is set (or the process ``parent_pid`` is gone)."""
        stop = stop or threading.Event()
        log.info("projection worker started at position %d", self._checkpoint.position)
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.info("parent process %d is gone; stopping", parent_pid)
                return
            try:
                self._maybe_prune()
                if not self.step():
                    stop.wait(self.idle_seconds)
            except CheckpointConflict as exc:
                log.warning("%s; re-reading it", exc)
                self._checkpoint = self.runner.checkpoint()
            except StoreUnavailable as exc:
                log.warning("store unavailable, retrying in %.0f s: %s", RETRY_SECONDS, exc)
                stop.wait(RETRY_SECONDS)
            except Exception:
                # Nothing was committed for the failed step; keep the worker alive and retry.
                log.exception("projection step failed; retrying in %.0f s", RETRY_SECONDS)
                self._checkpoint = self.runner.checkpoint()
                stop.wait(RETRY_SECONDS)
        log.info("projection worker stopped at position %d", self._checkpoint.position)


def open_sqlite_worker(
    settings: Settings, retention: Retention | None = None, batch_size: int = BATCH_SIZE
) -> SqliteWorker:
    """The worker of the embedded setup described by ``settings``: the event db and the
    view db beside it. Day buckets follow ``settings.timezone``; when that changed since
    the views were computed, they are dropped and projected again from the log."""
    from storage.sqlite import SqliteEventStore
    from storage.sqlite_views import SqliteViewStore

    bucketing = Bucketing(settings.timezone)
    views = SqliteViewStore.beside(settings.db)
    if views.reset_if_timezone_changed(settings.timezone):
        log.warning("day time zone is now %s: recomputing every read model from the log", settings.timezone)
    return SqliteWorker(SqliteEventStore(settings.db), views, bucketing, retention, batch_size=batch_size)
