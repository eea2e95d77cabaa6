"""Replays of the recent-events feed on DynamoDB (``pulse replay recent-events``).

The feed is a set of idempotent puts trimmed to the newest ``keep`` per scope, so it needs
no fence: a new generation (``storage.dynamodb_recent_generations``) is registered, live
batches write it beside the serving one from then on, and after a wait longer than the
time a process answers from the state it read last, a consistent scan of the event store
puts every fact stored before into it. A fact is then either stored before the scan began
(the scan has it) or fed by a live batch that read the state after the registration (the
batch wrote it). Then one conditional write switches reads to it, subscribers of the feed
wake up, and after the same wait (readers that read the old state are done) the old
generation's items are deleted.

Every page's cursor is recorded in the state item with the build's lease: a replay killed
with ``kill -9`` is resumed from its last page by the next ``pulse replay`` once the lease
has run out (live batches kept writing the build meanwhile); ``--fresh`` starts a new one.
A poison event is parked after the retries (``services.replay_parking``), as live.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from domain.clock import Clock
from domain.events import RecordedEvent
from domain.ports import ALL_TYPES, PROJECTIONS_MARKER, CheckpointConflict, EventStore, recent_marker
from domain.replay import LEASE_SECONDS, REPLAYING, ReplayLedger, ReplayRunning, ReplayStatus
from projections.recent import PROJECTION, RecentEventsProjection, newest, recency
from services.engine import RateMeter
from services.replay import ReplayProgress, ReplayResult, ReplayUnsupported, replay_owner
from services.replay_parking import ReplayParking
from storage.dynamodb_recent import DynamoRecentEvents
from storage.dynamodb_views import DynamoViewStore

log = logging.getLogger(__name__)

PAGE_SIZE = 1000


class DynamoRecentReplayer:
    """Runs ``pulse replay recent-events`` on DynamoDB; see the module docstring."""

    def __init__(
        self,
        events: EventStore,
        recent: DynamoRecentEvents,
        views: DynamoViewStore,
        ledger: ReplayLedger,
        clock: Clock,
        parking: ReplayParking | None = None,
        page_size: int = PAGE_SIZE,
        lease_seconds: float = LEASE_SECONDS,
        settle_seconds: float | None = None,
    ) -> None:
        self.events = events
        self.recent = recent
        self.views = views
        self.ledger = ledger
        self.clock = clock
        self.parking = parking or ReplayParking(None, 0, 0.0)
        self.page_size = page_size
        self.lease_seconds = lease_seconds
        #: Longer than any process answers from a cached state (see the module docstring).
        self.settle_seconds = recent.generations.cache_seconds + 0.5 if settle_seconds is None else settle_seconds

    def replayable(self) -> list[str]:
        return [PROJECTION]

    def _wait(self, seconds: float, stop: threading.Event | None) -> None:
        if stop is None:
            time.sleep(seconds)
        elif stop.wait(seconds):
            raise InterruptedError("the worker is stopping; run the replay again to resume it")

    def replay(
        self,
        projection: str,
        on_progress: Callable[[ReplayProgress], None] | None = None,
        fresh: bool = False,
        stop: threading.Event | None = None,
        owner: str | None = None,
    ) -> ReplayResult:
        if projection != PROJECTION:
            raise ReplayUnsupported(f"{projection!r} cannot be replayed by the recent events' replayer")
        owner = owner or replay_owner()
        total = sum(self.views.event_types().values())
        self.ledger.claim(projection, owner, self.clock.now(), self.lease_seconds, total)
        generations = self.recent.generations
        keep = self.recent.keep
        feed = RecentEventsProjection(keep)
        try:
            try:
                build, resumed = generations.begin(owner, self.lease_seconds, fresh=fresh)
            except CheckpointConflict as exc:
                running = generations.state().build
                holder = None if running is None else running.owner
                raise ReplayRunning(ReplayStatus(projection, REPLAYING, owner=holder)) from exc
            if resumed:
                log.info(
                    "resuming the replay of %s into generation %d after %d facts", projection, build.gen, build.done
                )
            rate = RateMeter()
            done = build.done

            def report(read: int) -> None:
                speed = rate.add(read)
                self.ledger.renew(
                    projection, owner, self.clock.now(), self.lease_seconds, done, max(total, done), speed
                )
                if on_progress is not None:
                    on_progress(ReplayProgress(projection, done, max(total, done), speed))

            report(0)
            self._wait(self.settle_seconds, stop)
            build = generations.progress(build, build.cursor, done, self.lease_seconds)  # the lease, after the wait
            # The newest ``keep`` written per scope so far: older facts cannot enter the feed.
            floors: dict[str, list[RecordedEvent]] = {}
            cursor = build.cursor
            pages = 0
            while True:
                if stop is not None and stop.is_set():
                    raise InterruptedError("the worker is stopping; run the replay again to resume it")
                page = self.events.read_facts(cursor, limit=self.page_size)
                if not page.events:
                    break
                changes = self.parking.project(PROJECTION, page.events, feed.project)
                scopes: dict[str, list[RecordedEvent]] = {}
                for scope, events in changes.scopes.items():
                    best = newest([*floors.get(scope, ()), *events], keep)
                    floors[scope] = best
                    fresh_ones = [event for event in events if recency(event) >= recency(best[-1])]
                    if fresh_ones:
                        scopes[scope] = fresh_ones
                self.recent.write_generation(build.gen, scopes)
                done += len(page.events)
                cursor = page.cursor
                build = generations.progress(build, cursor, done, self.lease_seconds)
                pages += 1
                report(len(page.events))
            generations.switch(build)
        except BaseException as exc:
            self.ledger.fail(projection, owner, str(exc) or type(exc).__name__, self.clock.now())
            raise
        # Subscribers of every feed re-render once at the switch.
        feeds = {ALL_TYPES, *self.views.event_types(), *floors}
        self.views.bump_markers({PROJECTIONS_MARKER, *map(recent_marker, feeds)})
        time.sleep(self.settle_seconds)  # readers of the old generation finish their query
        # Before the ledger lets another replay begin a generation this would take for garbage.
        try:
            deleted = self.recent.drop_generations(keep={build.gen})
        except Exception:  # switched all the same: the next replay deletes them
            log.exception("deleting the replaced generations of %s failed", projection)
            deleted = 0
        self.ledger.finish(projection, owner)
        log.info(
            "replayed %s into generation %d from %d facts; %d old items deleted", projection, build.gen, done, deleted
        )
        return ReplayResult(projection, self.views.checkpoint(PROJECTION), pages, done)


class DynamoReplayers:
    """Every replayable read model on DynamoDB, each by its own replayer."""

    def __init__(self, *replayers: Any) -> None:
        self._by_name = {name: replayer for replayer in replayers for name in replayer.replayable()}

    def replayable(self) -> list[str]:
        return sorted(self._by_name)

    def replay(self, projection: str, **options: Any) -> ReplayResult:
        found = self._by_name.get(projection)
        if found is None:
            raise ReplayUnsupported(
                f"{projection!r} cannot be replayed on DynamoDB; one of {', '.join(self.replayable())}"
            )
        return found.replay(projection, **options)
