"""What the backends on a log with one global order share (the embedded one and its
in-memory fake): the same projection handlers, and a log tail feeding the engine after
the day time-zone rule (views computed in another zone are dropped and projected again)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from bootstrap.alerts import alerts_handler
from bootstrap.archive import archive_handler
from domain.clock import SYSTEM_CLOCK, Clock
from domain.ports import PositionedViewStore, ProjectionStore, RecentChanges
from domain.settings import Settings
from projections.buckets import Bucketing
from projections.recent import RecentEventsProjection
from services.counters import PositionedCounters
from services.engine import ProjectionEngine, ProjectionHandler, ReadModelHandler
from workers.log_tail import LogTail, PositionedEventStore

log = logging.getLogger(__name__)


class ZonedViewStore(PositionedViewStore, Protocol):
    def reset_if_timezone_changed(self, timezone: str) -> bool:
        """Drop every read model and checkpoint when the day time zone changed; True if so."""


@dataclass
class PositionedBackend:
    """A backend's stores and what it builds from them; the modules add name and tables."""

    settings: Settings
    events: PositionedEventStore
    views: ZonedViewStore
    recent: ProjectionStore[RecentChanges]

    def handlers(self, options) -> list[ProjectionHandler]:
        counters = PositionedCounters(
            self.events,
            self.views,
            Bucketing(self.settings.timezone),
            options.retention,
            options.batch_size,
            clock=options.clock or SYSTEM_CLOCK,  # what "now" is for the retention cut of the cells written
        )
        handlers: list[ProjectionHandler] = [
            counters,
            ReadModelHandler(RecentEventsProjection(), self.recent),
        ]
        archive = None if options.without_archive else archive_handler(self.settings, definitions=self.events)
        if archive is not None:
            handlers.append(archive)
        # After the counters: it evaluates the values they have just applied.
        handlers.append(alerts_handler(self.events, self.views, self.settings, counters.position, options.clock))
        return handlers

    def worker(self, engine: ProjectionEngine, options, clock: Clock = SYSTEM_CLOCK) -> LogTail:
        if self.views.reset_if_timezone_changed(self.settings.timezone):
            log.warning("day time zone is now %s: recomputing every read model from the log", self.settings.timezone)
        return LogTail(
            self.events,
            engine,
            batch_size=options.batch_size,
            clock=clock,
            catch_up_batch_size=options.catch_up_batch_size or 4 * options.batch_size,
        )
