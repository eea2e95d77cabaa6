"""The counters and gauges read model on a log with one global order (SQLite, memory),
as the projection engine drives it (``PositionedCounters``).

A runner holds the metric catalog (the fold of the ``metric-definitions`` stream) and
the pure ``MetricsProjection`` built from it. For each batch of facts it projects, then
asks the view store to apply the changes and move the checkpoint in one step
(``ViewStore.apply``); a redelivered batch is a no-op there.

Metrics defined after events exist: backfill, exactly once
----------------------------------------------------------
The view store records, with each checkpoint, the version of the definitions stream its
read models reflect. Before each batch the runner catches up with the stream; when the
catalog is newer than the views, it rebuilds exactly the metrics and gauges defined,
updated or deleted since (``MetricCatalog.changed_since``):

1. ``ViewStore.rebuild`` opens one write transaction, checks the checkpoint is where the
   runner last saw it (position P), and deletes those items' counters and gauge values;
2. the runner reads every fact up to P from the event store and projects it with only
   those definitions (no built-ins: they are already right), adding the changes;
3. committing records the new definitions version with the checkpoint still at P.

Live batches cover ``(P, ...]`` and are applied only with the new definitions, because
``apply`` refuses a batch projected at another definitions version. So each fact counts
once for each metric: through the rebuild if it is at or before P, through a live batch
if after, whether the worker is stopped, killed or racing another worker at any point
(the rebuild is one transaction; a conflict re-reads the checkpoint and tries again).
``updateMetric`` is the same rebuild; ``deleteMetric`` is a rebuild that adds nothing.

The rebuild holds the view store's write lock while it reads the history, which pauses
live projection for that long (about a second per 100,000 facts on the embedded store);
queries keep reading the old counters until it commits.

Retention: no cell older than its resolution's retention
---------------------------------------------------------
Given a retention and a clock, the runner leaves out of every batch's and rebuild's
changes the cells whose bucket starts before their resolution's horizon at the clock's
now (``Retention.horizons``), the cells pruning would delete: a 30-day-old sale counts in
its hour and day cells but writes no minute cell. Replays run the same handler, so they
follow the same rule.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter, countOf

from domain.clock import Clock
from domain.events import FACTS_STREAM, RecordedEvent
from domain.metrics import RESOLUTIONS, MetricCatalog
from domain.parked import is_retry_partition
from domain.ports import Checkpoint, EventStore, PositionedViewStore, ViewChanges
from projections.buckets import Bucketing, Retention
from projections.counters import PROJECTION, MetricsProjection
from services.engine import FeedBatch, RateMeter

log = logging.getLogger(__name__)
_STREAM_ID = attrgetter("stream_id")


@dataclass(frozen=True, slots=True)
class Rebuilt:
    metrics: list[str]
    gauges: list[str]
    facts: int
    definitions_version: int


class ProjectionRunner:
    """Projects batches of facts into a view store for one partition of the log."""

    def __init__(
        self,
        events: EventStore,
        views: PositionedViewStore,
        bucketing: Bucketing,
        partition: str = "",
        projection: str = PROJECTION,
        retention: Retention | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.events = events
        self.views = views
        self.bucketing = bucketing
        self.partition = partition
        self.projection_name = projection
        #: With both: cells older than their retention at the clock's now are not written.
        self.retention = retention
        self.clock = clock
        self.catalog = MetricCatalog()
        self.rate = RateMeter()
        self._projection: MetricsProjection | None = None

    @property
    def projection(self) -> MetricsProjection:
        if self._projection is None:
            self._projection = MetricsProjection(
                self.catalog.metrics.values(), self.catalog.gauges.values(), self.bucketing
            )
        return self._projection

    def checkpoint(self) -> Checkpoint:
        return self.views.checkpoint(self.projection_name, self.partition)

    def within_retention(self, changes: ViewChanges) -> ViewChanges:
        """``changes`` less the counter cells whose bucket starts before their resolution's
        retention horizon now (one pass over the batch's cells, not its facts)."""
        if self.retention is None or self.clock is None or not changes.counters:
            return changes
        horizons = self.retention.horizons(self.clock.now())
        old = [key for key in changes.counters if key[2] < horizons.get(key[1], key[2])]
        if not old:
            return changes
        kept = dict(changes.counters)
        for key in old:
            del kept[key]
        return dataclasses.replace(changes, counters=kept)

    def refresh_definitions(self) -> bool:
        """Catch up with the definitions stream; True when it changed."""
        if self.catalog.refresh(self.events):
            self._projection = None
            return True
        return False

    def process(self, batch: Sequence[RecordedEvent], after: int, upto: int) -> bool:
        """Project a batch of facts in ``(after, upto]`` and apply it with the checkpoint
        move. Aggregate events in the batch are skipped. Returns False when the batch
        had been applied already."""
        if countOf(map(_STREAM_ID, batch), FACTS_STREAM) == len(batch):
            facts = batch  # the usual batch: facts only, checked in C rather than per fact in Python
        else:
            facts = [event for event in batch if event.stream_id == FACTS_STREAM]
        changes = self.within_retention(self.projection.project(facts))
        return self.views.apply(
            self.projection_name,
            self.partition,
            changes,
            after,
            upto,
            definitions_version=self.catalog.version,
            events_per_second=self.rate.add(len(facts)),
        )

    def sync_definitions(
        self, checkpoint: Checkpoint, history: Callable[[int], Iterable[Sequence[RecordedEvent]]]
    ) -> Rebuilt | None:
        """Bring the views to the catalog's definitions version, rebuilding what changed
        from ``history(position)``: the facts up to ``position``, in pages."""
        self.refresh_definitions()
        if checkpoint.definitions_version == self.catalog.version:
            return None
        if checkpoint.definitions_version > self.catalog.version:
            # Another worker saw a newer stream version; ours will catch up on the next read.
            return None
        metrics, gauges = self.catalog.changed_since(checkpoint.definitions_version)
        only = MetricsProjection(
            [self.catalog.metrics[name] for name in metrics if name in self.catalog.metrics],
            [self.catalog.gauges[name] for name in gauges if name in self.catalog.gauges],
            self.bucketing,
            builtins=False,
        )
        facts = 0
        with self.views.rebuild(
            self.projection_name,
            self.partition,
            checkpoint.position,
            self.catalog.version,
            metrics,
            gauges,
        ) as add:
            for page in history(checkpoint.position):
                facts += len(page)
                add(self.within_retention(only.project(page)))
        log.info(
            "rebuilt metrics %s and gauges %s from %d facts (definitions version %d)",
            metrics,
            gauges,
            facts,
            self.catalog.version,
        )
        return Rebuilt(metrics, gauges, facts, self.catalog.version)


class PositionedCounters:
    """The engine's handler of the counters read model on a positioned log: syncs the
    metric definitions before each step (rebuilding what changed), projects each batch
    past its checkpoint, and prunes by the retention. With a ``clock`` (bootstrap passes the
    worker's), it writes no cell older than the retention at the clock's now; without, it
    writes every cell (tests of the runner alone)."""

    name = PROJECTION

    def __init__(
        self,
        events: EventStore,
        views: PositionedViewStore,
        bucketing: Bucketing,
        retention: Retention | None = None,
        page_size: int = 5000,
        clock: Clock | None = None,
    ) -> None:
        self.retention = retention or Retention()
        self.clock = clock
        self.runner = ProjectionRunner(events, views, bucketing, retention=self.retention, clock=clock)
        self.events = events
        self.views = views
        self.page_size = page_size
        self._checkpoint: Checkpoint | None = None

    @property
    def bucketing(self) -> Bucketing:
        return self.runner.bucketing

    def _current(self) -> Checkpoint:
        if self._checkpoint is None:
            self._checkpoint = self.runner.checkpoint()
        return self._checkpoint

    def position(self, partition: str) -> int:
        return self._current().position

    def _history(self, upto: int) -> Iterator[Sequence[RecordedEvent]]:
        """Facts at positions ``<= upto``, in pages."""
        cursor = None
        while True:
            page = self.events.read_facts(cursor, limit=self.page_size)
            facts = [event for event in page.events if event.position is not None and event.position <= upto]
            if facts:
                yield facts
            if len(facts) < len(page.events) or not page.events:
                return
            cursor = page.cursor

    def prepare(self) -> None:
        if self.runner.sync_definitions(self._current(), self._history) is not None:
            self._checkpoint = None

    #: A parked event is retried as a batch of its own partition (``domain.parked``).
    retries_parked = True

    def handle(self, batch: FeedBatch) -> bool:
        if is_retry_partition(batch.partition):
            return self._retry_parked(batch)
        own = self.position(batch.partition)
        if batch.upto <= own:
            return False
        applied = self.runner.process(batch.facts_after(own), after=own, upto=batch.upto)
        self._checkpoint = None
        return applied

    def _retry_parked(self, batch: FeedBatch) -> bool:
        """A parked event, applied exactly once by the checkpoint of its retry partition,
        with the definitions of the live read model."""
        runner = ProjectionRunner(
            self.events, self.views, self.bucketing, batch.partition, retention=self.retention, clock=self.clock
        )
        runner.catalog = self.runner.catalog
        runner._projection = self.runner.projection  # the same definitions
        current = runner.checkpoint()
        if batch.upto <= current.position:
            return False
        if current.definitions_version != runner.catalog.version:
            with self.views.rebuild(self.name, batch.partition, current.position, runner.catalog.version, [], []):
                pass  # nothing to rebuild: the retry partition only records its definitions version
        return runner.process(batch.facts_after(current.position), after=current.position, upto=batch.upto)

    def flush(self) -> None:
        return None  # every batch is applied as it comes

    def close(self) -> None:
        return None

    def maintain(self, now: float) -> None:
        deleted = self.prune(now)
        if deleted:
            log.info("retention: deleted %d counter cells", deleted)

    def prune(self, now: float) -> int:
        """Delete the cells older than the retention at epoch second ``now``; how many."""
        deleted = 0
        for resolution in RESOLUTIONS:
            horizon = self.retention.horizon(resolution, now)
            if horizon is not None:
                deleted += self.views.prune(resolution, horizon)
        return deleted

    def forget(self) -> None:
        self._checkpoint = None
