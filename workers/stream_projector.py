"""Projecting DynamoDB Streams batches, shared by the poller (``workers.dynamodb_poller``)
and the Lambda handler (``workers.lambda_handlers``). Rebuilding metrics defined later is
``workers.dynamodb_rebuild``.

A live batch (records of one shard, in order)
---------------------------------------------
1. Keep the ``INSERT`` records of facts. MODIFY (a racing resend, see
   ``DynamoEventStore.ingest``) and REMOVE are skipped, and so are aggregate events,
   except that records of the ``metric-definitions`` stream refresh the definitions.
2. Read the definitions state (consistent) AFTER the records were fetched: the active
   generation of every metric and gauge, and a rebuild in progress if any.
3. Project with the same pure code as SQLite (``MetricsProjection``): built-in counts
   from every fact; each metric and gauge from the facts received at or after its
   generation's fence; a rebuild in progress also gets the facts received at or after
   its fence, projected with the definitions it is building.
4. ``DynamoViewStore.write_batch`` (one guarded UpdateItem per item), then the checkpoint.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import partial

from domain.events import FACTS_STREAM, RecordedEvent
from domain.metrics import BUILTIN_PREFIX, DEFINITIONS_STREAM, GaugeDefinition, MetricCatalog, MetricDefinition
from domain.micros import epoch_micros, now_micros
from domain.parked import ParkedEvents, is_retry_partition
from domain.ports import PROJECTIONS_MARKER, EventStore, ViewChanges
from projections.buckets import Bucketing
from projections.counters import PROJECTION, MetricsProjection, merge, type_totals
from services.engine import FeedBatch, RateMeter
from services.replay_parking import scanned_into
from storage.dynamodb_generations import DefinitionsState, GenerationChanges
from storage.dynamodb_view_items import TYPES_NAME
from storage.dynamodb_views import DynamoViewStore

log = logging.getLogger(__name__)

#: Guards of shards finished this long ago are dropped from the items they wrote.
RETIRE_AFTER_SECONDS = 3600.0
_FINISHED_CACHE_SECONDS = 60.0


class DefinitionsHistory:
    """The metric-definitions stream, foldable up to any version (old definitions keep
    counting into the active generation while a rebuild writes the new one)."""

    def __init__(self, events: EventStore) -> None:
        self.events = events
        self._recorded: list[RecordedEvent] = []
        self._catalogs: dict[int, MetricCatalog] = {}
        self._lock = threading.Lock()

    @property
    def latest_version(self) -> int:
        return (self._recorded[-1].version or 0) if self._recorded else 0

    def refresh(self) -> bool:
        with self._lock:
            new = self.events.read_stream(DEFINITIONS_STREAM, after_version=self.latest_version)
            self._recorded.extend(new)
            return bool(new)

    def at(self, version: int) -> MetricCatalog:
        if version > self.latest_version:
            self.refresh()
            if version > self.latest_version:
                raise ValueError(f"definitions version {version} is not in the store (latest {self.latest_version})")
        with self._lock:
            found = self._catalogs.get(version)
            if found is None:
                found = MetricCatalog()
                found.apply([e for e in self._recorded if (e.version or 0) <= version])
                self._catalogs[version] = found
            return found


class ProjectionPlan:
    """How one definitions state projects facts: parts per generation, fences applied."""

    def __init__(self, state: DefinitionsState, history: DefinitionsHistory, bucketing: Bucketing) -> None:
        active = history.at(state.version)
        self._state = state
        self._catalog = active
        self._bucketing = bucketing
        by_fence: dict[int, tuple[list[MetricDefinition], list[GaugeDefinition]]] = {}
        for kind, definitions in ((0, active.metrics.values()), (1, active.gauges.values())):
            for definition in definitions:
                generation = state.generations.get(definition.name)
                if generation is None:
                    log.error("definition %r has no generation in the views; it is not projected", definition.name)
                    continue
                by_fence.setdefault(generation.fence, ([], []))[kind].append(definition)
        self.fences = sorted(by_fence)
        # Facts received in [fences[i], fences[i+1]) count for every name fenced at or before fences[i].
        self._fenced: list[MetricsProjection] = []
        metrics: list[MetricDefinition] = []
        gauges: list[GaugeDefinition] = []
        for fence in self.fences:
            metrics += by_fence[fence][0]
            gauges += by_fence[fence][1]
            self._fenced.append(MetricsProjection(list(metrics), list(gauges), bucketing, builtins=False))
        self._builtins = MetricsProjection([], [], bucketing)
        # Built-in counts a replay gave a generation: facts received before its fence are
        # in it already (they still count as events of their type).
        self._builtin_fences = {
            name[len(BUILTIN_PREFIX) :]: g.fence
            for name, g in state.generations.items()
            if name.startswith(BUILTIN_PREFIX)
        }
        self._active = {name: g.gen for name, g in state.generations.items()}
        # Per-type totals a replay gave a generation: facts received before its fence are
        # counted there already.
        types = state.generations.get(TYPES_NAME)
        self._types_fence = 0 if types is None else types.fence
        self._building_totals = state.build is not None and TYPES_NAME in state.build.metrics
        self.build = state.build
        self._building: MetricsProjection | None = None
        if state.build is not None:
            target = history.at(state.build.version)
            self._building = MetricsProjection(
                [target.metrics[name] for name in state.build.metrics if name in target.metrics],
                [target.gauges[name] for name in state.build.gauges if name in target.gauges],
                bucketing,
                builtins=False,
            )
        self._building_types = frozenset(
            name[len(BUILTIN_PREFIX) :]
            for name in (state.build.metrics if state.build else ())
            if name.startswith(BUILTIN_PREFIX)
        )

    def _builtin_counts(self, facts: Sequence[RecordedEvent], received: Sequence[int]) -> ViewChanges:
        """Built-in counts and event types of ``facts``, without the facts a replayed
        built-in count holds already."""
        fences = self._builtin_fences
        types_fence = self._types_fence
        if not fences and not types_fence:
            return self._builtins.project(facts)
        timed = list(zip(facts, received, strict=True))
        counted = self._builtins.project([fact for fact, micros in timed if micros >= fences.get(fact.type, 0)])
        totals = type_totals([fact for fact, micros in timed if micros >= types_fence]).event_types
        return ViewChanges(counted.counters, counted.gauges, totals, len(facts), counted.watermark)

    def project(self, facts: Sequence[RecordedEvent]) -> list[GenerationChanges]:
        received = [epoch_micros(fact.received_at) for fact in facts]
        changes: list[ViewChanges] = [self._builtin_counts(facts, received)]
        groups: dict[int, list[RecordedEvent]] = {}
        for fact, micros in zip(facts, received, strict=True):
            index = bisect.bisect_right(self.fences, micros) - 1
            if index >= 0:
                groups.setdefault(index, []).append(fact)
        for index, group in groups.items():
            changes.append(self._fenced[index].project(group))
        parts = [GenerationChanges(merge(changes), self._active)]
        if self.build is not None and self._building is not None:
            fence = self.build.fence
            late = [fact for fact, micros in zip(facts, received, strict=True) if micros >= fence]
            if late:
                parts.append(GenerationChanges(self._building.project(late), self.build.gen))
                if self._building_types:  # a replay rebuilding built-in counts too
                    counts = self._builtins.project([fact for fact in late if fact.type in self._building_types])
                    parts.append(GenerationChanges(counts_only(counts), self.build.gen))
                if self._building_totals:  # and the per-type totals
                    parts.append(GenerationChanges(type_totals(late), self.build.gen))
        return parts

    def project_into(self, facts: Sequence[RecordedEvent], gen: int) -> list[GenerationChanges]:
        """``facts`` counted into generation ``gen`` alone, whatever its fence: a retry of
        events a replay's scan into ``gen`` parked (``services.replay_parking``). Raises
        ``ValueError`` while ``gen`` does not serve yet (retry after the switch)."""
        names = {name for name, g in self._state.generations.items() if g.gen == gen}
        if not names:
            raise ValueError(
                f"generation {gen} does not serve: retry once its replay has switched,"
                " or drop the event if a later replay counted it"
            )
        catalog = self._catalog
        counted = MetricsProjection(
            [d for name, d in catalog.metrics.items() if name in names],
            [d for name, d in catalog.gauges.items() if name in names],
            self._bucketing,
            builtins=False,
        ).project(facts)
        types = {name[len(BUILTIN_PREFIX) :] for name in names if name.startswith(BUILTIN_PREFIX)}
        builtin = self._builtins.project([fact for fact in facts if fact.type in types])
        totals = type_totals(facts) if TYPES_NAME in names else type_totals(())
        return [GenerationChanges(merge([counted, counts_only(builtin), totals]), gen)]


def counts_only(changes: ViewChanges) -> ViewChanges:
    """``changes``' counters alone: event types are counted once, by the live generation."""
    return ViewChanges(counters=changes.counters, gauges={}, event_types={}, events=0, watermark=None)


@dataclass(frozen=True, slots=True)
class Applied:
    facts: int
    definitions_changed: bool


class StreamProjector:
    """Applies batches of change records of one shard at a time to a DynamoDB view store."""

    def __init__(
        self,
        events: EventStore,
        views: DynamoViewStore,
        bucketing: Bucketing,
        projection: str = PROJECTION,
        retire_after_seconds: float = RETIRE_AFTER_SECONDS,
    ) -> None:
        self.events = events
        self.views = views
        self.bucketing = bucketing
        self.projection_name = projection
        self.history = DefinitionsHistory(events)
        self.rate = RateMeter()
        self.retire_after_seconds = retire_after_seconds
        self._plans: dict[tuple, ProjectionPlan] = {}
        #: Where a retry of a parked event finds which scan parked it (set by bootstrap).
        self.parked: ParkedEvents | None = None
        self._finished: tuple[float, dict[str, int]] | None = None
        views.ensure_state(bucketing.timezone)

    def _plan(self, state: DefinitionsState) -> ProjectionPlan:
        key = (state.version, tuple(sorted((n, g.gen, g.fence) for n, g in state.generations.items())), state.build)
        plan = self._plans.get(key)
        if plan is None:
            self._plans.clear()  # states only move forward
            plan = self._plans[key] = ProjectionPlan(state, self.history, self.bucketing)
        return plan

    def finished(self) -> dict[str, int]:
        """Shards read to their end (cached for a minute)."""
        now = time.monotonic()
        if self._finished is None or now - self._finished[0] > _FINISHED_CACHE_SECONDS:
            self._finished = (now, self.views.finished_partitions(self.projection_name))
        return self._finished[1]

    def forget_finished(self) -> None:
        self._finished = None

    def finished_partitions(self) -> Collection[str]:
        return set(self.views.finished_partitions(self.projection_name))

    def record_lag(self, partition: str, seconds: float) -> None:
        self.views.record_lag(self.projection_name, partition, seconds)

    def mark_finished(self, partition: str) -> None:
        self.views.mark_finished(self.projection_name, partition)
        self.forget_finished()

    def _retired(self) -> Collection[str]:
        horizon = now_micros() - int(self.retire_after_seconds * 1e6)
        return {shard for shard, at in self.finished().items() if at <= horizon}

    # --- as the engine's handler of the counters read model -----------------------------

    #: A parked event is retried as a batch of its own partition (``domain.parked``): the
    #: items' guards of that partition make it exactly once, as for a shard.
    retries_parked = True

    @property
    def name(self) -> str:
        return self.projection_name

    def position(self, partition: str) -> int:
        return self.views.checkpoint(self.projection_name, partition).position

    def prepare(self) -> None:
        return None  # rebuilds run beside the feed (``run_pending_rebuild``)

    def flush(self) -> None:
        return None  # every batch is applied as it comes

    def close(self) -> None:
        return None

    def maintain(self, now: float) -> None:
        return None  # retention is the items' TTL

    def forget(self) -> None:
        self.forget_finished()

    def handle(self, batch: FeedBatch) -> bool:
        """Project and apply records ``batch.first..batch.upto`` of one shard; a
        redelivery, whole or cut elsewhere, changes nothing (the items' guards)."""
        return self.apply(batch).facts > 0

    def apply(self, batch: FeedBatch) -> Applied:
        partition = batch.partition
        facts: list[tuple[int, RecordedEvent]] = []
        definitions_changed = False
        for event in batch.events:
            if event.stream_id == FACTS_STREAM:
                facts.append((event.position or 0, event))
            elif event.stream_id == DEFINITIONS_STREAM:
                definitions_changed = True
        if definitions_changed:
            self.history.refresh()
        # Read after the records were fetched: see "Rebuilds" in the module docstring.
        state = self.views.definitions_state()
        plan = self._plan(state)
        first, last = batch.first, batch.upto
        chosen = [event for _, event in facts]
        project = plan.project
        if is_retry_partition(partition) and self.parked is not None and chosen:
            scanned = scanned_into(self.parked.get(self.projection_name, chosen[0].id))
            if scanned is not None:
                project = partial(plan.project_into, gen=scanned)
        parts = project(chosen)
        changed: set[str] = set()
        if facts:

            def redo(position: int) -> list[GenerationChanges]:
                return project([event for sequence, event in facts if sequence > position])

            changed = self.views.write_batch(partition, first, last, parts, redo, self._retired())
        previous = self.views.checkpoint(self.projection_name, partition)
        watermark = parts[0].changes.watermark
        if previous.watermark is not None and (watermark is None or previous.watermark > watermark):
            watermark = previous.watermark
        if self.views.save_checkpoint(
            self.projection_name,
            partition,
            last,
            watermark,
            len(facts),
            self.rate.add(len(facts)),
        ):
            changed.add(PROJECTIONS_MARKER)
        # After the data: live subscriptions of what this batch changed wake up.
        self.views.bump_markers(changed)
        return Applied(len(facts), definitions_changed)
