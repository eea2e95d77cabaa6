"""The read models on DynamoDB: counters, gauges, event types, checkpoints and the
definitions state, all in the views table.

``DynamoViewStore`` is the ``ViewStore`` the rest of Pulse uses; it writes and reads
counter cells, gauge readings and event types itself and composes the other parts:

- ``storage.dynamodb_view_items``: the table's item layout and value encodings;
- ``storage.dynamodb_guarded_writes``: how each item is written exactly once although
  batches are delivered at least once;
- ``storage.dynamodb_generations``: the definitions state, and rebuilds of metrics
  defined after events exist into a new generation;
- ``storage.dynamodb_checkpoints``: per-shard checkpoints and the change markers.

Where this differs from the SQLite store: no cross-item atomicity — a batch's items
become visible one by one, and a crash leaves some applied (exactly) and some not until
the batch is redelivered; the checkpoint is written after the items and only saves work
on restart. Batches are written by the stream projector (``write_batch``, with the
records to redo what an item holds part of), not through the positioned ``CounterWriter``
port's ``apply``: the items, not a checkpoint, make each record count once.

Every counter write (live batches, rebuilds, replays) goes through ``write_batch``, which
writes no cell whose bucket starts before its resolution's retention horizon at the
store's ``clock`` (the cells TTL would expire at once), as the positioned runner does.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

from botocore.client import BaseClient

from domain.clock import SYSTEM_CLOCK, Clock
from domain.metrics import BUILTIN_PREFIX, RESOLUTIONS, SKIPPED
from domain.ports import (
    Checkpoint,
    CounterCell,
    CounterDelta,
    GaugeReading,
    expect_position,
    metric_marker,
)
from domain.settings import Settings
from projections.buckets import Retention
from projections.series import aggregate_cells
from storage.dynamodb_base import (
    BATCH_GET_KEYS,
    Item,
    Table,
    WriteMeter,
    WriterPool,
    chunked,
    make_client,
)
from storage.dynamodb_checkpoints import ChangeMarkers, Checkpoints
from storage.dynamodb_generations import (
    BUILTIN_GENERATION,
    FENCE_SECONDS,
    LEASE_SECONDS,
    STATE_CACHE_SECONDS,
    Build,
    Definitions,
    DefinitionsState,
    GenerationChanges,
    GenerationWriter,
    cells,
)
from storage.dynamodb_guarded_writes import Guard, GuardedWrites, ItemRedo
from storage.dynamodb_view_items import (
    COUNTER_PREFIX,
    GAUGE_PREFIX,
    MAX_BUCKET,
    MIN_BUCKET,
    TYPES_NAME,
    TYPES_PK,
    bucket_of,
    bucket_text,
    counter_cell,
    counter_prefix,
    gauge_key,
    gauge_pk,
    gauge_reading,
    parse_counter_pk,
    slices,
    types_pk,
)

#: What a redo returns: the batch's changes from its records after a position.
Redo = Callable[[int], Sequence[GenerationChanges]]
WRITE_THREADS = 8


class DynamoViewStore:
    """``ViewStore`` on the DynamoDB views table (see ``storage.dynamodb_view_items``)."""

    def __init__(
        self,
        client: BaseClient,
        table_name: str,
        *,
        retention: Retention | None = None,
        fence_seconds: float = FENCE_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
        write_threads: int = WRITE_THREADS,
        state_cache_seconds: float = STATE_CACHE_SECONDS,
        meter: WriteMeter | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.table_name = table_name
        self.retention = retention or Retention()
        #: What "now" is for the retention cut of the cells written.
        self.clock = clock
        self._table = Table(client, table_name, meter=meter)
        self._pool = WriterPool(write_threads, "pulse-views")
        self._writes = GuardedWrites(self._table)
        self._markers = ChangeMarkers(self._table, self._pool)
        self._definitions = Definitions(
            self._table,
            self._markers,
            fence_seconds=fence_seconds,
            lease_seconds=lease_seconds,
            state_cache_seconds=state_cache_seconds,
        )
        self._checkpoints = Checkpoints(self._table, lambda: self.definitions_state(consistent=False).version)

    @classmethod
    def from_settings(cls, settings: Settings, retention: Retention | None = None, **options: Any) -> DynamoViewStore:
        return cls(make_client(settings), settings.views_table, retention=retention, **options)

    # --- settings the parts hold ---------------------------------------------------------

    @property
    def meter(self) -> WriteMeter | None:
        """Told ``(write kind, item bytes)`` of each write request, for cost accounting."""
        return self._table.meter

    @meter.setter
    def meter(self, meter: WriteMeter | None) -> None:
        self._table.meter = meter

    @property
    def fence_seconds(self) -> float:
        return self._definitions.fence_seconds

    @fence_seconds.setter
    def fence_seconds(self, seconds: float) -> None:
        self._definitions.fence_seconds = seconds

    @property
    def lease_seconds(self) -> float:
        return self._definitions.lease_seconds

    @lease_seconds.setter
    def lease_seconds(self, seconds: float) -> None:
        self._definitions.lease_seconds = seconds

    # --- definitions state and rebuilds (storage.dynamodb_generations) ------------------

    def definitions_state(self, consistent: bool = True) -> DefinitionsState:
        return self._definitions.state(consistent)

    def ensure_state(self, timezone: str) -> DefinitionsState:
        return self._definitions.ensure(timezone)

    def begin_build(
        self,
        version: int,
        metrics: Sequence[str],
        gauges: Sequence[str],
        owner: str,
        fence_seconds: float | None = None,
        replay: bool = False,
    ) -> Build:
        return self._definitions.begin_build(version, metrics, gauges, owner, fence_seconds, replay)

    def renew_build(self, build: Build, until: float | None = None) -> Build:
        return self._definitions.renew_build(build, until)

    def finish_build(self, build: Build) -> None:
        self._definitions.finish_build(build)

    def abandon_build(self, build: Build) -> None:
        self._definitions.abandon_build(build)

    @contextmanager
    def rebuild(
        self,
        projection: str,
        partition: str,
        at_position: int,
        definitions_version: int,
        metrics: Sequence[str],
        gauges: Sequence[str],
        *,
        owner: str | None = None,
        fence_seconds: float | None = None,
    ) -> Iterator[GenerationWriter]:
        """The port's rebuild, as a new generation.

        On entry: when ``partition`` is given, its checkpoint must be at ``at_position``
        (there is no global position on DynamoDB: the stream projector passes ``""``);
        the rebuild is registered (``begin_build``). The yielded writer adds changes to
        the new generation; they must come from the facts it ``includes`` (received
        before its fence) — live batches count the others. A clean exit switches the
        names to the new generation and records ``definitions_version`` in one write;
        an exception abandons it, leaving what readers see unchanged.
        """
        if partition:
            expect_position(self.checkpoint(projection, partition), at_position)
        build = self.begin_build(definitions_version, metrics, gauges, owner or uuid.uuid4().hex, fence_seconds)
        writer = GenerationWriter(self, build)
        try:
            yield writer
        except BaseException:
            self.abandon_build(writer.build)
            raise
        self.finish_build(writer.build)

    # --- checkpoints and change markers (storage.dynamodb_checkpoints) ------------------

    def checkpoint(self, projection: str, partition: str = "") -> Checkpoint:
        return self._checkpoints.get(projection, partition)

    def checkpoints(self) -> list[Checkpoint]:
        return self._checkpoints.all()

    def finished_partitions(self, projection: str) -> dict[str, int]:
        """Partitions (shards) read to their end, with when that was recorded (epoch µs)."""
        return self._checkpoints.finished_partitions(projection)

    def mark_finished(self, projection: str, partition: str) -> None:
        self._checkpoints.mark_finished(projection, partition)

    def record_lag(self, projection: str, partition: str, seconds: float) -> None:
        self._checkpoints.record_lag(projection, partition, seconds)

    def save_checkpoint(
        self,
        projection: str,
        partition: str,
        position: int,
        watermark: int | None,
        events: int,
        events_per_second: float = 0.0,
    ) -> bool:
        """Move the checkpoint forward to ``position`` (never back); False if it was there."""
        return self._checkpoints.save(projection, partition, position, watermark, events, events_per_second)

    def bump_markers(self, keys: Collection[str]) -> None:
        """Move each marker one version up; call once the data writes behind them succeeded."""
        self._markers.bump(keys)

    def change_markers(self) -> dict[str, int]:
        return self._markers.read()

    # --- writes ------------------------------------------------------------------------

    def write_batch(
        self,
        partition: str,
        first: int,
        last: int,
        parts: Sequence[GenerationChanges],
        redo: Redo | None = None,
        retired: Collection[str] = (),
    ) -> set[str]:
        """Apply one batch of shard ``partition`` holding its records ``first..last``;
        returns the change markers of the metrics and gauges whose items changed.

        Each counter and event-type item gets one guarded UpdateItem (see
        ``storage.dynamodb_guarded_writes``); ``redo(position)`` recomputes the batch from
        its records after ``position`` for items that already hold part of it (without it
        such an item raises ``CheckpointConflict``). Gauges are conditional Puts. Guards of
        the ``retired`` partitions (shards finished long ago) are removed from the items
        written. Items are written on a few threads; the first error is raised after all
        have finished, and redelivering the batch then completes it exactly.
        """
        guard = Guard.of(partition, first, last)
        counters, types, gauges = cells(parts)
        for ident in self.retention.expired(counters, self.clock.now(), resolution_at=2):
            del counters[ident]  # older than its retention: pruning (TTL) would delete it
        redone: dict[int, tuple[dict, dict, dict]] = {}
        redone_lock = threading.Lock()

        def again(position: int) -> tuple[dict, dict, dict]:
            with redone_lock:
                if position not in redone:
                    assert redo is not None
                    redone[position] = cells(redo(position))
                return redone[position]

        def counter_redo(ident: tuple) -> ItemRedo | None:
            return None if redo is None else lambda position: again(position)[0].get(ident)

        def type_redo(ident: tuple[str, int]) -> ItemRedo | None:
            def redo_type(position: int) -> CounterDelta | None:
                count = again(position)[1].get(ident)
                return None if not count else CounterDelta(count, 0.0, None, None)

            return None if redo is None else redo_type

        tasks: list[Callable[[], str | None]] = []
        for ident, delta in counters.items():
            tasks.append(
                partial(self._writes.counter, ident, delta, guard, counter_redo(ident), retired, self.retention)
            )
        for (etype, gen), n in types.items():
            tasks.append(partial(self._writes.event_type, etype, n, guard, type_redo((etype, gen)), retired, gen))
        for (name, key, gen), reading in gauges.items():
            tasks.append(partial(self._writes.gauge, name, key, gen, reading))
        return {marker for marker in self._pool.each(_run, tasks) if marker is not None}

    # --- housekeeping --------------------------------------------------------------------

    def collect_garbage(self) -> int:
        """Delete counter and gauge items of generations no name uses any more (replaced
        or abandoned rebuilds). One Scan of the table: run it after a switch."""
        state = self.definitions_state()
        live = {(name, str(g.gen)) for name, g in state.generations.items()}
        if state.build is not None:
            live |= {(name, str(state.build.gen)) for name in state.build.names}
        garbage = []
        for item in self._table.scan(
            {
                "ProjectionExpression": "pk, sk",
                "FilterExpression": "begins_with(pk, :c) OR begins_with(pk, :g) OR begins_with(pk, :t) OR pk = :t0",
                "ExpressionAttributeValues": {
                    ":c": {"S": COUNTER_PREFIX},
                    ":g": {"S": GAUGE_PREFIX},
                    ":t": {"S": TYPES_PK + "#"},
                    ":t0": {"S": TYPES_PK},
                },
            },
            "looking for replaced generations",
        ):
            pk = item["pk"]["S"]
            if pk == TYPES_PK or pk.startswith(TYPES_PK + "#"):  # per-type totals (a replay rebuilds them)
                name, gen = TYPES_NAME, pk[len(TYPES_PK) + 1 :] or str(BUILTIN_GENERATION)
            elif pk.startswith(COUNTER_PREFIX):
                name, gen, _, _ = parse_counter_pk(pk)
            else:
                name, gen = pk[len(GAUGE_PREFIX) :].rsplit("#", 1)
            # Generation 0 holds built-in counts until a replay gives them another.
            builtin_zero = gen == str(BUILTIN_GENERATION) and name not in state.generations
            if builtin_zero or (name, gen) in live or int(gen) >= state.next_gen:
                continue
            garbage.append({"pk": item["pk"], "sk": item["sk"]})
        self._table.delete_keys(garbage, "deleting replaced generations")
        return len(garbage)

    def prune(self, resolution: str, before: int) -> int:
        """Delete counter cells of ``resolution`` with bucket < ``before``. DynamoDB's TTL
        (``expiresAt``) does this by itself; this scans, for an explicit cut."""
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        doomed = []
        touched: set[str] = set()
        for item in self._table.scan(
            {
                "ProjectionExpression": "pk, sk",
                "FilterExpression": "begins_with(pk, :c) AND contains(pk, :res)",
                "ExpressionAttributeValues": {":c": {"S": COUNTER_PREFIX}, ":res": {"S": f"#{resolution}#"}},
            },
            "pruning counters",
        ):
            metric_key, _, found, _ = parse_counter_pk(item["pk"]["S"])
            if found == resolution and bucket_of(item["sk"]["S"]) < before:
                doomed.append(item)
                touched.add(metric_marker(metric_key))
        self._table.delete_keys(doomed, "pruning counters")
        if doomed:
            self.bump_markers(touched)
        return len(doomed)

    # --- reads -------------------------------------------------------------------------

    def _generation(self, metric: str) -> int | None:
        found = self.definitions_state(consistent=False).generations.get(metric)
        if found is None and metric.startswith(BUILTIN_PREFIX):
            return BUILTIN_GENERATION  # until a replay gives built-in counts a generation
        return None if found is None else found.gen

    def _counter_items(self, metric: str, gen: int, resolution: str, start: int, end: int) -> Iterator[Item]:
        low = bucket_text(max(start, MIN_BUCKET))
        high = bucket_text(min(end, MAX_BUCKET) - 1) + "~"  # '~' sorts after the '#' of every cell
        prefix = counter_prefix(metric, gen, resolution)
        parts = slices(resolution, start, end)
        if parts is None:
            yield from self._table.scan(
                {
                    "FilterExpression": "begins_with(pk, :prefix) AND sk BETWEEN :low AND :high",
                    "ExpressionAttributeValues": {":prefix": {"S": prefix}, ":low": {"S": low}, ":high": {"S": high}},
                },
                "reading counters",
            )
            return
        for part in parts:
            yield from self._table.query(
                {
                    "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
                    "ExpressionAttributeValues": {
                        ":pk": {"S": prefix + part},
                        ":low": {"S": low},
                        ":high": {"S": high},
                    },
                },
                "reading counters",
            )

    def read_counters(
        self,
        metric: str,
        resolution: str,
        start: int,
        end: int,
        where: Mapping[int, str] | None = None,
        group_by: int | None = None,
    ) -> list[CounterCell]:
        if resolution not in RESOLUTIONS and resolution != SKIPPED:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        gen = self._generation(metric)
        if gen is None or start >= end:
            return []
        # Cells past their retention stay readable until TTL deletes them (within days),
        # as SQLite's stay until its next prune.
        items = self._counter_items(metric, gen, resolution, start, end)
        return aggregate_cells((cell for cell in map(counter_cell, items) if start <= cell[0] < end), where, group_by)

    def read_gauges(self, name: str, keys: Sequence[str] | None = None) -> list[GaugeReading]:
        found = self.definitions_state(consistent=False).generations.get(name)
        if found is None:
            return []
        if keys is None:
            items = list(
                self._table.query(
                    {
                        "KeyConditionExpression": "pk = :pk",
                        "ExpressionAttributeValues": {":pk": {"S": gauge_pk(name, found.gen)}},
                    },
                    "reading gauges",
                )
            )
        else:
            wanted = [gauge_key(name, found.gen, key) for key in sorted(set(keys))]
            items = [
                item
                for chunk in chunked([{"pk": key["pk"], "sk": key["sk"]} for key in wanted], BATCH_GET_KEYS)
                for item in self._table.batch_get(chunk, "reading gauges")
            ]
        return sorted((gauge_reading(name, item) for item in items), key=lambda r: r.key)

    def event_types(self) -> dict[str, int]:
        found = self.definitions_state(consistent=False).generations.get(TYPES_NAME)
        pk = types_pk(BUILTIN_GENERATION if found is None else found.gen)
        items = self._table.query(
            {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": pk}}},
            "reading event types",
        )
        return {item["sk"]["S"]: int(item["n"]["N"]) for item in items}

    def close(self) -> None:
        self._pool.close()
        self._table.client.close()


def _run(task: Callable[[], str | None]) -> str | None:
    return task()


__all__ = ["DynamoViewStore"]
