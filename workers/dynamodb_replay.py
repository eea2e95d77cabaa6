"""Replays on DynamoDB: the counters read model (every metric, gauge and built-in count)
rebuilt into a new generation of the views items while the current one serves, then
switched by one conditional write of the definitions state.

It is the backfill of ``workers.dynamodb_rebuild`` applied to every name at the version
the views reflect (``begin_build(..., replay=True)``): a fence F, a wait until F plus the
settle time, a scan of the event store counting the facts received before F into the new
generation, while live batches count those received at or after F into both. The build's
lease in the state item keeps a second replay, or a backfill, from starting meanwhile;
the replay ledger (``storage.dynamodb_replays``) records the request, progress and
failure for ``projections``.

A replay killed with ``kill -9`` leaves its build registered with a lease that runs out;
the next replay (or backfill) then starts a fresh generation and the dead one's items are
collected after the switch: on DynamoDB a replay restarts rather than resumes.

The per-type totals (``event_types``, which list the built-in counts) are rebuilt too:
they get a generation under the pseudo-name ``TYPES_NAME``, counted from the scan for
facts received before the fence and by live batches from it, as every built-in count.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from domain.clock import Clock
from domain.events import RecordedEvent
from domain.metrics import builtin_key
from domain.ports import CheckpointConflict, ViewChanges
from domain.replay import LEASE_SECONDS, REPLAYING, ReplayLedger, ReplayRunning, ReplayStatus
from projections.counters import PROJECTION, MetricsProjection, merge, type_totals
from services.engine import RateMeter
from services.replay import ReplayProgress, ReplayResult, ReplayUnsupported, replay_owner
from services.replay_parking import ReplayParking, scan_partition
from storage.dynamodb_generations import GenerationWriter
from storage.dynamodb_view_items import TYPES_NAME
from workers.dynamodb_rebuild import REBUILD_PAGE, RebuildTiming
from workers.stream_projector import StreamProjector, counts_only

log = logging.getLogger(__name__)


class DynamoReplayer:
    """Runs ``pulse replay metrics`` on DynamoDB; see the module docstring."""

    def __init__(
        self,
        projector: StreamProjector,
        ledger: ReplayLedger,
        timing: RebuildTiming,
        clock: Clock,
        page_size: int = REBUILD_PAGE,
        lease_seconds: float = LEASE_SECONDS,
        parking: ReplayParking | None = None,
    ) -> None:
        self.projector = projector
        #: Poison events are parked as in live processing (None: they fail the replay).
        self.parking = parking or ReplayParking(None, 0, 0.0)
        self.ledger = ledger
        self.timing = timing
        self.clock = clock
        self.page_size = page_size
        self.lease_seconds = lease_seconds

    def replayable(self) -> list[str]:
        return [PROJECTION]

    def replay(
        self,
        projection: str,
        on_progress: Callable[[ReplayProgress], None] | None = None,
        fresh: bool = False,
        stop: threading.Event | None = None,
        owner: str | None = None,
    ) -> ReplayResult:
        if projection not in self.replayable():
            raise ReplayUnsupported(f"{projection!r} cannot be replayed on DynamoDB; one of {PROJECTION}")
        owner = owner or replay_owner()
        views = self.projector.views
        history = self.projector.history
        history.refresh()
        state = views.definitions_state()
        catalog = history.at(state.version)
        types = views.event_types()
        total = sum(types.values())
        self.ledger.claim(projection, owner, self.clock.now(), self.lease_seconds, total)
        writer: GenerationWriter | None = None
        try:
            try:
                build = views.begin_build(
                    state.version,
                    [*sorted(catalog.metrics), *map(builtin_key, sorted(types)), TYPES_NAME],
                    sorted(catalog.gauges),
                    owner,
                    self.timing.fence_seconds,
                    replay=True,
                )
            except CheckpointConflict as exc:
                # A backfill of changed definitions, or a replay begun outside the ledger.
                running = views.definitions_state().build
                holder = running.owner if running is not None else None
                raise ReplayRunning(ReplayStatus(projection, REPLAYING, owner=holder)) from exc
            # The build's lease runs with the replay's, so a killed replay frees both alike.
            writer = GenerationWriter(views, build, lease_seconds=self.lease_seconds)
            writer.renew(until=time.time() + self.lease_seconds)
            done = 0
            rate = RateMeter()

            def report(read: int) -> None:
                speed = rate.add(read)
                self.ledger.renew(projection, owner, self.clock.now(), self.lease_seconds, done, total, speed)
                if on_progress is not None:
                    on_progress(ReplayProgress(projection, done, total, speed))

            ready = build.fence / 1e6 + self.timing.settle_seconds
            while (left := ready - time.time()) > 0:  # facts stamped before the fence are all stored by then
                writer.renew()
                report(0)
                if stop is not None and stop.wait(min(left, 2.0)):
                    raise InterruptedError("the worker is stopping; run the replay again")
                if stop is None:
                    time.sleep(min(left, 2.0))
            bucketing = self.projector.bucketing
            only = MetricsProjection(catalog.metrics.values(), catalog.gauges.values(), bucketing, builtins=False)
            counts = MetricsProjection([], [], bucketing)
            rebuilt_types = frozenset(types)
            cursor = None
            pages = 0
            while True:
                if stop is not None and stop.is_set():
                    raise InterruptedError("the worker is stopping; run the replay again")
                page = self.projector.events.read_facts(cursor, limit=self.page_size)
                if not page.events:
                    break
                counted = [fact for fact in page.events if writer.includes(fact)]
                if counted:

                    def project(facts: Sequence[RecordedEvent]) -> ViewChanges:
                        builtin = counts.project([fact for fact in facts if fact.type in rebuilt_types])
                        return merge([only.project(facts), counts_only(builtin), type_totals(facts)])

                    writer(self.parking.project(PROJECTION, counted, project, scan_partition(build.gen)))
                done += len(page.events)
                total = max(total, done)
                pages += 1
                report(len(page.events))
                cursor = page.cursor
            views.finish_build(writer.build)
        except BaseException as exc:
            if writer is not None:
                views.abandon_build(writer.build)
            self.ledger.fail(projection, owner, str(exc) or type(exc).__name__, self.clock.now())
            raise
        deleted = views.collect_garbage()
        self.ledger.finish(projection, owner)
        log.info(
            "replayed %s into generation %d from %d facts; %d old items deleted", projection, build.gen, done, deleted
        )
        return ReplayResult(projection, views.checkpoint(PROJECTION), pages, done)
