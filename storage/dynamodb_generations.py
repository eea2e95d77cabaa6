"""Generations in the DynamoDB views table: metrics and gauges defined after events exist.

Every metric and gauge name has an active generation (built-in counts: 0), where its
counter cells or readings live. A rebuild (define, update, delete) writes a fresh
generation, invisible to reads until ``finish_build`` switches the names to it in one
conditional write of the state item (pk ``STATE``). A generation has a fence F (a
receipt time, epoch µs): the rebuild counts the facts received before F from a full
read of the event store; live batches count the facts received at or after F — while
the rebuild runs (they write both generations) and for ever after. So every fact counts
once per metric. See ``workers/dynamodb_rebuild.py`` for the timing assumptions.

The state item also holds the definitions version the views reflect, the day time zone
they were computed in, the next generation number and the rebuild in progress (with
its owner and lease, so one process rebuilds at a time).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from domain.events import RecordedEvent
from domain.metrics import BUILTIN_PREFIX
from domain.micros import epoch_micros, now_micros
from domain.ports import (
    PROJECTIONS_MARKER,
    CheckpointConflict,
    CounterDelta,
    GaugeValue,
    ViewChanges,
    gauge_marker,
    metric_marker,
)
from projections.counters import combine
from projections.gauges import newer
from storage.dynamodb_base import ConditionFailed, Table
from storage.dynamodb_checkpoints import ChangeMarkers
from storage.dynamodb_view_items import STATE_KEY, TYPES_NAME, number

if TYPE_CHECKING:
    from storage.dynamodb_views import DynamoViewStore

log = logging.getLogger(__name__)

BUILTIN_GENERATION = 0
#: The pseudo-shard whose guard protects a rebuild's pages from a resent request.
REBUILD_PARTITION = "rebuild"
#: Seconds between the registration of a rebuild and its fence (see workers/dynamodb_rebuild.py).
FENCE_SECONDS = 30.0
LEASE_SECONDS = 60.0  # renewed at every page; a dead rebuilder delays the next by at most this
STATE_CACHE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Generation:
    """Where a name's counters or readings live, and since when live batches count."""

    gen: int
    #: Facts received at or after this (epoch µs) count through live batches; earlier
    #: ones came from the rebuild that made the generation.
    fence: int


@dataclass(frozen=True, slots=True)
class Build:
    """A rebuild in progress: the names of ``version`` being written into ``gen``."""

    version: int
    gen: int
    fence: int
    metrics: tuple[str, ...]
    gauges: tuple[str, ...]
    owner: str
    lease: int  # epoch µs

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted({*self.metrics, *self.gauges}))


@dataclass(frozen=True, slots=True)
class DefinitionsState:
    version: int = 0
    generations: Mapping[str, Generation] = field(default_factory=dict)
    build: Build | None = None
    next_gen: int = 1
    timezone: str | None = None


class GenerationChanges(NamedTuple):
    """Changes and the generation each of their metric keys and gauge names goes to:
    a mapping, or one generation for every name. Built-in counts always go to 0."""

    changes: ViewChanges
    generations: Mapping[str, int] | int


def generation_of(part: GenerationChanges, name: str) -> int | None:
    if isinstance(part.generations, int):
        return part.generations
    if name.startswith(BUILTIN_PREFIX):
        # Built-in counts live in generation 0 until a replay gives them a generation.
        return part.generations.get(name, BUILTIN_GENERATION)
    return part.generations.get(name)


#: Counter deltas by ``(metric key, generation, resolution, bucket, dimension values)``.
CounterCells = dict[tuple, CounterDelta]
#: Gauge readings by ``(gauge name, key, generation)``.
GaugeCells = dict[tuple[str, str, int], GaugeValue]


#: Facts per ``(event type, generation of the per-type totals)``.
TypeCells = dict[tuple[str, int], int]


def cells(parts: Sequence[GenerationChanges]) -> tuple[CounterCells, TypeCells, GaugeCells]:
    """The items ``parts`` write: counter deltas and gauge winners per generation, and
    facts per event type and generation of the totals (``TYPES_NAME``; 0 until a replay
    gives them one); names without a generation are left out (and logged)."""
    counters: CounterCells = {}
    types: TypeCells = {}
    gauges: GaugeCells = {}
    for part in parts:
        for (metric_key, resolution, bucket, dims), delta in part.changes.counters.items():
            gen = generation_of(part, metric_key)
            if gen is None:
                log.warning("no generation for metric %r: its counters are not written", metric_key)
                continue
            ident = (metric_key, gen, resolution, bucket, dims)
            counters[ident] = combine(counters.get(ident), delta)
        if part.changes.event_types:
            types_gen = generation_of(part, TYPES_NAME)
            types_gen = BUILTIN_GENERATION if types_gen is None else types_gen
            for etype, n in part.changes.event_types.items():
                types[(etype, types_gen)] = types.get((etype, types_gen), 0) + n
        for (name, key), reading in part.changes.gauges.items():
            gen = generation_of(part, name)
            if gen is None:
                log.warning("no generation for gauge %r: its readings are not written", name)
                continue
            if newer(reading, gauges.get((name, key, gen))):
                gauges[(name, key, gen)] = reading
    return counters, types, gauges


def _state_from(item: Mapping[str, Any] | None) -> DefinitionsState:
    if item is None:
        return DefinitionsState()
    generations = {
        name: Generation(int(value["M"]["g"]["N"]), int(value["M"]["f"]["N"]))
        for name, value in item.get("gens", {"M": {}})["M"].items()
    }
    build = None
    raw = item.get("build")
    if raw is not None:
        b = raw["M"]
        build = Build(
            version=int(b["ver"]["N"]),
            gen=int(b["gen"]["N"]),
            fence=int(b["fence"]["N"]),
            metrics=tuple(v["S"] for v in b["metrics"]["L"]),
            gauges=tuple(v["S"] for v in b["gauges"]["L"]),
            owner=b["owner"]["S"],
            lease=int(b["lease"]["N"]),
        )
    tz = item.get("tz")
    return DefinitionsState(
        version=number(item, "ver"),
        generations=generations,
        build=build,
        next_gen=number(item, "next", 1),
        timezone=None if tz is None else tz["S"],
    )


def _build_value(build: Build) -> dict[str, Any]:
    return {
        "M": {
            "ver": {"N": str(build.version)},
            "gen": {"N": str(build.gen)},
            "fence": {"N": str(build.fence)},
            "metrics": {"L": [{"S": name} for name in build.metrics]},
            "gauges": {"L": [{"S": name} for name in build.gauges]},
            "owner": {"S": build.owner},
            "lease": {"N": str(build.lease)},
        }
    }


class Definitions:
    """The state item: read (with a short cache for hot paths), created, and moved through
    a rebuild's begin, renewals and finish or abandonment."""

    def __init__(
        self,
        table: Table,
        markers: ChangeMarkers,
        *,
        fence_seconds: float = FENCE_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
        state_cache_seconds: float = STATE_CACHE_SECONDS,
    ) -> None:
        self._table = table
        self._markers = markers
        self.fence_seconds = fence_seconds
        self.lease_seconds = lease_seconds
        self._state_cache_seconds = state_cache_seconds
        self._cached_state: tuple[float, DefinitionsState] | None = None

    def state(self, consistent: bool = True) -> DefinitionsState:
        """The state item; ``consistent=False`` may answer from a cache of one second."""
        now = time.monotonic()
        if not consistent and self._cached_state is not None:
            at, state = self._cached_state
            if now - at < self._state_cache_seconds:
                return state
        state = _state_from(self._table.get(STATE_KEY, "reading the definitions state", consistent=consistent))
        self._cached_state = (now, state)
        return state

    def ensure(self, timezone: str) -> DefinitionsState:
        """Create the state item for views computed with day buckets in ``timezone``;
        ``ValueError`` when the views were computed in another zone."""
        with suppress(ConditionFailed):  # made before, by this process or another
            self._table.put(
                "creating the definitions state",
                Item={**STATE_KEY, "ver": {"N": "0"}, "gens": {"M": {}}, "next": {"N": "1"}, "tz": {"S": timezone}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        state = self.state()
        if state.timezone != timezone:
            raise ValueError(
                f"the DynamoDB views were computed with day buckets in {state.timezone!r}, not {timezone!r}:"
                " set PULSE_TIMEZONE back, or drop the views table and let the workers project again"
            )
        return state

    def begin_build(
        self,
        version: int,
        metrics: Sequence[str],
        gauges: Sequence[str],
        owner: str,
        fence_seconds: float | None = None,
        replay: bool = False,
    ) -> Build:
        """Register a rebuild of ``metrics`` and ``gauges`` for definitions ``version`` into a
        new generation; live batches start writing it for facts received from its fence.
        ``replay``: rebuild names of the version the views reflect (``pulse replay``).

        Raises ``CheckpointConflict`` when the views already reflect ``version`` (unless
        replaying it), another owner's rebuild holds an unexpired lease, or the state
        changed meanwhile.
        """
        state = self.state()
        now = now_micros()
        if version < state.version or (version == state.version and not replay):
            raise CheckpointConflict("definitions", "", f"views already reflect version {state.version}")
        if state.build is not None and state.build.owner != owner and state.build.lease > now:
            raise CheckpointConflict(
                "definitions", "", f"rebuild of version {state.build.version} by {state.build.owner} is running"
            )
        fence = now + int((self.fence_seconds if fence_seconds is None else fence_seconds) * 1e6)
        build = Build(
            version=version,
            gen=state.next_gen,
            fence=fence,
            metrics=tuple(metrics),
            gauges=tuple(gauges),
            owner=owner,
            lease=now + int(self.lease_seconds * 1e6),
        )
        try:
            self._table.update(
                "registering a rebuild",
                Key=STATE_KEY,
                UpdateExpression="SET #build = :build, #next = :after",
                ConditionExpression="#next = :next AND #ver = :ver",
                ExpressionAttributeNames={"#build": "build", "#next": "next", "#ver": "ver"},
                ExpressionAttributeValues={
                    ":build": _build_value(build),
                    ":after": {"N": str(build.gen + 1)},
                    ":next": {"N": str(state.next_gen)},
                    ":ver": {"N": str(state.version)},
                },
            )
        except ConditionFailed as failed:
            raise CheckpointConflict("definitions", "", "the state changed while registering a rebuild") from failed
        self._cached_state = None
        return build

    def _update_build(self, build: Build, expression: str, names: dict[str, str], values: dict[str, Any]) -> bool:
        """Update the state item unless the rebuild was taken over (False then)."""
        try:
            self._table.update(
                "updating the definitions state",
                Key=STATE_KEY,
                UpdateExpression=expression,
                ConditionExpression="#build.#gen = :gen AND #build.#owner = :owner",
                ExpressionAttributeNames={"#build": "build", "#gen": "gen", "#owner": "owner", **names},
                ExpressionAttributeValues={":gen": {"N": str(build.gen)}, ":owner": {"S": build.owner}, **values},
            )
        except ConditionFailed:
            return False
        finally:
            self._cached_state = None
        return True

    def renew_build(self, build: Build, until: float | None = None) -> Build:
        """Extend the lease (to ``until``, epoch seconds, if given); ``CheckpointConflict``
        when the rebuild was taken over."""
        lease = int(until * 1e6) if until is not None else now_micros() + int(self.lease_seconds * 1e6)
        if not self._update_build(
            build, "SET #build.#lease = :lease", {"#lease": "lease"}, {":lease": {"N": str(lease)}}
        ):
            raise CheckpointConflict("definitions", "", f"rebuild into generation {build.gen} was taken over")
        return Build(build.version, build.gen, build.fence, build.metrics, build.gauges, build.owner, lease)

    def finish_build(self, build: Build) -> None:
        """Switch every rebuilt name to the new generation and record the version, in one
        conditional write: readers see the old counters until then, the new ones after."""
        state = self.state()
        generations = dict(state.generations)
        for name in build.names:
            generations[name] = Generation(build.gen, build.fence)
        value = {
            "M": {name: {"M": {"g": {"N": str(g.gen)}, "f": {"N": str(g.fence)}}} for name, g in generations.items()}
        }
        done = self._update_build(
            build,
            "SET #ver = :ver, #gens = :gens REMOVE #build",
            {"#ver": "ver", "#gens": "gens"},
            {":ver": {"N": str(build.version)}, ":gens": value},
        )
        if not done:
            raise CheckpointConflict("definitions", "", f"rebuild into generation {build.gen} was taken over")
        # A rebuilt name may have been a metric or a gauge (a deleted one): move both markers.
        self._markers.bump({PROJECTIONS_MARKER, *map(metric_marker, build.names), *map(gauge_marker, build.names)})

    def abandon_build(self, build: Build) -> None:
        """Forget a rebuild (its items become garbage), unless someone else took it over."""
        self._update_build(build, "REMOVE #build", {}, {})


class GenerationWriter:
    """What ``DynamoViewStore.rebuild`` yields: adds recomputed changes to the new
    generation, one guarded page per call (a resent request is then a no-op)."""

    def __init__(self, store: DynamoViewStore, build: Build, lease_seconds: float | None = None) -> None:
        self._store = store
        self.build = build
        self.pages = 0
        #: The lease it keeps (the store's by default; a replay keeps its own, shorter one).
        self.lease_seconds = store.lease_seconds if lease_seconds is None else lease_seconds

    @property
    def fence(self) -> int:
        return self.build.fence

    def includes(self, event: RecordedEvent) -> bool:
        """Whether the rebuild counts this fact (received before the fence)."""
        return epoch_micros(event.received_at) < self.build.fence

    def renew(self, until: float | None = None) -> None:
        """Keep the lease: extend it when half of it is gone, or to ``until`` (epoch s)."""
        now = now_micros()
        if until is not None or self.build.lease - now < self.lease_seconds * 1e6 / 2:
            self.build = self._store.renew_build(
                self.build, until if until is not None else now / 1e6 + self.lease_seconds
            )

    def __call__(self, changes: ViewChanges) -> None:
        self.renew()
        self.pages += 1
        self._store.write_batch(REBUILD_PARTITION, self.pages, self.pages, [GenerationChanges(changes, self.build.gen)])
