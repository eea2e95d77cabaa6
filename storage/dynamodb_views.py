"""The read models on DynamoDB: counters, gauges, event types, checkpoints and the
definitions state, all in the views table (keys ``pk``/``sk``, both strings).

Item layout
-----------
- counter cell   pk ``C#<metric key>#<generation>#<resolution>#<slice>``,
                 sk ``<bucket + 10^11, 12 digits>#<dimension values as JSON>``.
  The slice is the UTC day of the bucket for minutes, its UTC month for hours and its
  UTC year for days, so a series of 60 minutes or 24 hours reads one or two partitions
  with one Query each (sk BETWEEN), and the live writes of one metric spread over three
  partitions (one per resolution). Attributes: ``n`` count and ``s`` sum (numbers, ADDed),
  ``lo``/``hi`` min and max (order-preserving text of the float, see ``sortable``),
  ``expiresAt`` (TTL: bucket + retention; day cells none), ``q#<partition>`` the guard
  of each stream shard that wrote the cell, and ``d`` the dimension JSON when it was too
  long for the sort key (which then holds its SHA-256).
- gauge reading  pk ``G#<name>#<generation>``, sk the key; ``v`` value, ``t`` occurredAt
  (epoch µs), ``e`` event id.
- event type     pk ``T``, sk the type; ``n`` facts (guarded like counters).
- checkpoint     pk ``CP``, sk ``<projection>#<partition>``; position as ``seq_key`` text,
                 watermark, totals; ``fin`` once the shard was read to its end.
- definitions    pk ``STATE``, sk ``definitions``: the definitions version the views
  reflect, the active generation of every metric and gauge, a rebuild in progress.
- change marker  pk ``MK``, sk the marker key (``metric:<key>``, ``gauge:<name>``,
  ``projections``); ``v`` ADDed by one after writes that changed its data succeeded (a
  redelivery changes nothing and moves nothing), read with one strongly consistent
  Query (``change_markers``, what live subscriptions poll).

Exactly once, per item
----------------------
Streams and Lambda deliver at least once and shards are processed independently, so
there is no global checkpoint to commit with the changes as SQLite does. Instead each
counter item carries, per shard, the last sequence number whose records it includes
(``q#<shard>``), and a batch's pre-aggregated delta is ONE UpdateItem
``ADD n :n, s :s SET q#<shard> = :last`` under ``attribute_not_exists(q) OR q < :first``.
Within a shard records are applied in order, so an item's ``q`` says exactly which of
the shard's records it holds: all up to ``q``. Then:

- a redelivered batch (``q >= :last``) fails the condition on every item and changes
  nothing — ConditionalCheckFailed is the expected no-op;
- a batch whose boundaries differ from a failed attempt's (a poller restarted with a
  larger read, Lambda's retry from a reported failure) overlaps: ``:first <= q < :last``.
  The item then gets only the records after ``q``, recomputed from the batch (``redo``),
  under ``q = :q``. The brief's plain ``q < :last`` would count the overlap twice.

``q`` is text ``seq_key(n)``: the digit count then the digits, so text order is number
order for sequence numbers of any length (AWS's reach 40 digits, beyond DynamoDB's 38
digits of number precision). Guards of shards that finished long ago are REMOVEd when a
later write sees them (``retired``), so an item holds the guards of the few shards that
wrote it recently: a shard closes every few hours and never delivers again once finished.

min and max have no update function in DynamoDB: a new cell gets them with
``if_not_exists``; when the returned item shows the batch goes beyond, a follow-up
conditional SET (``lo > :v``) folds it in. Folding is idempotent, so it is also done on
a redelivered batch (covering a crash between the ADD and the fold). Gauges are a
conditional Put, last-writer-wins on ``(occurredAt, id)``: idempotent by nature.

Where this differs from the SQLite store: no cross-item atomicity — a batch's items
become visible one by one, and a crash leaves some applied (exactly) and some not until
the batch is redelivered; the checkpoint is written after the items and only saves work
on restart. ``apply`` (the port) returns False when the checkpoint is at ``upto`` but
never raises for a checkpoint elsewhere: the items decide.

Generations: metrics defined after events exist
-----------------------------------------------
Every metric and gauge name has an active generation (built-in counts: 0). A rebuild
(define, update, delete) writes a fresh generation, invisible to reads until ``finish``
switches the name to it in one conditional write of the state item. A generation has a
fence F (a receipt time, epoch µs): the rebuild counts the facts received before F from
a full read of the event store; live batches count the facts received at or after F —
while the rebuild runs (they write both generations) and for ever after. So every fact
counts once per metric. See ``workers/stream_projector.py`` for the timing assumptions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import struct
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import Any, NamedTuple, TypeVar

from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import StoreUnavailable
from domain.events import RecordedEvent
from domain.metrics import BUILTIN_PREFIX, HOUR, MINUTE, RESOLUTIONS
from domain.micros import epoch_micros, later, now_micros
from domain.ports import (
    PROJECTIONS_MARKER,
    Checkpoint,
    CheckpointConflict,
    CounterCell,
    CounterDelta,
    GaugeReading,
    GaugeValue,
    ViewChanges,
    gauge_marker,
    metric_marker,
)
from domain.settings import Settings
from projections.buckets import Retention
from projections.counters import combine
from projections.gauges import newer
from projections.series import aggregate_cells
from storage.dynamodb_base import (
    BATCH_GET_KEYS,
    BATCH_WRITE_ITEMS,
    MAX_SORT_KEY_BYTES,
    TTL_ATTRIBUTE,
    item_size,
    make_client,
    retry_unprocessed,
)

log = logging.getLogger(__name__)

Item = dict[str, Any]
T = TypeVar("T")

STATE_KEY = {"pk": {"S": "STATE"}, "sk": {"S": "definitions"}}
CHECKPOINT_PK = "CP"
MARKERS_PK = "MK"
TYPES_PK = "T"
COUNTER_PREFIX = "C#"
GAUGE_PREFIX = "G#"
GUARD_PREFIX = "q#"
#: The pseudo-shard whose guard protects a rebuild's pages from a resent request.
REBUILD_PARTITION = "rebuild"
BUILTIN_GENERATION = 0

BUCKET_OFFSET = 10**11  # buckets from year ~1200 BC to AD 30,000 as 12 non-negative digits
BUCKET_DIGITS = 12
_MIN_BUCKET = int(datetime(1, 1, 2, tzinfo=UTC).timestamp())
_MAX_BUCKET = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp())

# Sums are DynamoDB numbers (ADD needs one) and DynamoDB keeps 38 significant digits: each
# delta is rounded to 1e-9 and deltas of 1e28 or more are out of range, so a sum stays
# exact to 1e-9 up to ~1e29. Beyond, the cell is marked ``ovf`` and reads give an
# unknown (infinite) sum, as SQLite does when a double overflows.
SUM_QUANTUM = Decimal("1E-9")
MAX_SUM_DELTA = 1e28
_DECIMAL = Context(prec=80)

#: Above this many slices a counter read scans the table instead of querying each one;
#: the API never gets there (10,000 buckets: 7 days of minutes, 14 months of hours,
#: 28 years of days).
MAX_SLICE_QUERIES = 64
WRITE_THREADS = 8
#: Seconds between the registration of a rebuild and its fence (see stream_projector).
FENCE_SECONDS = 30.0
LEASE_SECONDS = 60.0  # renewed at every page; a dead rebuilder delays the next by at most this
STATE_CACHE_SECONDS = 1.0


# ----------------------------------------------------------------------- pure helpers


def seq_key(position: int | str) -> str:
    """A sequence number as text whose order is numeric: digit count (2 digits), digits."""
    digits = str(int(position))
    return f"{len(digits):02d}{digits}"


def seq_of(key: str) -> int:
    return int(key[2:])


def sortable(value: float) -> str:
    """A float as 16 hex digits whose text order is numeric order (exact round trip)."""
    bits = struct.unpack(">Q", struct.pack(">d", value))[0]
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | (1 << 63)
    return f"{bits:016x}"


def unsortable(text: str) -> float:
    bits = int(text, 16)
    bits = bits ^ (1 << 63) if bits >> 63 else bits ^ 0xFFFF_FFFF_FFFF_FFFF
    return struct.unpack(">d", struct.pack(">Q", bits))[0]


def sum_number(total: float) -> str | None:
    """A sum delta as a DynamoDB number rounded to ``SUM_QUANTUM``; None out of range."""
    if not math.isfinite(total) or abs(total) >= MAX_SUM_DELTA:
        return None
    exact = Decimal(repr(total)).quantize(SUM_QUANTUM, context=_DECIMAL)
    return "0" if not exact else str(exact.normalize(_DECIMAL))


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def slice_of(resolution: str, bucket: int) -> str:
    """The partition slice of a bucket: its UTC day (minute), month (hour) or year (day)."""
    moment = _utc(bucket)
    if resolution == MINUTE:
        return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    if resolution == HOUR:
        return f"{moment.year:04d}-{moment.month:02d}"
    return f"{moment.year:04d}"


def slices(resolution: str, start: int, end: int) -> list[str] | None:
    """The slices holding buckets in ``[start, end)``, oldest first; None when there are
    more than ``MAX_SLICE_QUERIES``."""
    start, end = max(start, _MIN_BUCKET), min(end, _MAX_BUCKET)
    if start >= end:
        return []
    first, last = _utc(start), _utc(end - 1)
    if resolution == MINUTE:
        count = (end - 1) // 86400 - start // 86400 + 1
    elif resolution == HOUR:
        count = (last.year - first.year) * 12 + last.month - first.month + 1
    else:
        count = last.year - first.year + 1
    if count > MAX_SLICE_QUERIES:
        return None
    found: list[str] = []
    if resolution == MINUTE:
        day = start - start % 86400
        while day < end:
            found.append(slice_of(MINUTE, day))
            day += 86400
    elif resolution == HOUR:
        year, month = first.year, first.month
        for _ in range(count):
            found.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    else:
        found = [f"{year:04d}" for year in range(first.year, last.year + 1)]
    return found


def bucket_text(bucket: int) -> str:
    return f"{bucket + BUCKET_OFFSET:0{BUCKET_DIGITS}d}"


def _json(values: Sequence[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))


def counter_key(metric_key: str, generation: int, resolution: str, bucket: int, dims: Sequence[str]) -> Item:
    """The key of a counter cell, plus ``d`` when the dimensions do not fit the sort key."""
    dims_text = _json(dims)
    sk = f"{bucket_text(bucket)}#{dims_text}"
    key: Item = {
        "pk": {"S": f"{COUNTER_PREFIX}{metric_key}#{generation}#{resolution}#{slice_of(resolution, bucket)}"},
        "sk": {"S": sk},
    }
    if len(sk.encode()) > MAX_SORT_KEY_BYTES:
        key["sk"] = {"S": f"{bucket_text(bucket)}#~{hashlib.sha256(dims_text.encode()).hexdigest()}"}
        key["d"] = {"S": dims_text}
    return key


def parse_counter_pk(pk: str) -> tuple[str, str, str, str]:
    """``(metric key, generation, resolution, slice)`` of a counter partition key."""
    metric_key, generation, resolution, part = pk[len(COUNTER_PREFIX) :].rsplit("#", 3)
    return metric_key, generation, resolution, part


def _bucket_of(sk: str) -> int:
    return int(sk[:BUCKET_DIGITS]) - BUCKET_OFFSET


def _dims_of(item: Mapping[str, Any]) -> list[str]:
    tail = item["sk"]["S"][BUCKET_DIGITS + 1 :]
    return json.loads(item["d"]["S"] if tail.startswith("~") else tail)


def _counter_cell(item: Mapping[str, Any]) -> tuple[int, tuple[str, ...], CounterDelta]:
    """``(bucket, dimension values, delta)`` of a stored counter cell."""
    total = math.inf if "ovf" in item else float(Decimal(item["s"]["N"])) if "s" in item else 0.0
    delta = CounterDelta(
        int(item["n"]["N"]),
        total,
        unsortable(item["lo"]["S"]) if "lo" in item else None,
        unsortable(item["hi"]["S"]) if "hi" in item else None,
    )
    # Missing dimensions read as "", as SQLite's padded columns do.
    return _bucket_of(item["sk"]["S"]), (*_dims_of(item), "", "", ""), delta


def gauge_key(name: str, generation: int, key: str) -> Item:
    item: Item = {"pk": {"S": f"{GAUGE_PREFIX}{name}#{generation}"}, "sk": {"S": key}}
    if len(key.encode()) > MAX_SORT_KEY_BYTES:
        item["sk"] = {"S": "~" + hashlib.sha256(key.encode()).hexdigest()}
        item["k"] = {"S": key}
    return item


def _expires_at(retention: Retention, resolution: str, bucket: int) -> int | None:
    # The same horizon as SQLite's prune (Retention.horizon), measured from the bucket.
    horizon = retention.horizon(resolution, 0)
    return None if horizon is None else bucket - horizon


# ------------------------------------------------------------------- state and changes


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
    if name.startswith(BUILTIN_PREFIX):
        return BUILTIN_GENERATION
    if isinstance(part.generations, int):
        return part.generations
    return part.generations.get(name)


def _number(item: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = item.get(name)
    return default if value is None else int(value["N"])


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
        version=_number(item, "ver"),
        generations=generations,
        build=build,
        next_gen=_number(item, "next", 1),
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


class _ConditionFailed(Exception):
    def __init__(self, item: Mapping[str, Any]) -> None:
        self.item = item


@dataclass(frozen=True, slots=True)
class _Guard:
    partition: str
    first: str  # seq_key
    last: str

    @property
    def attribute(self) -> str:
        return GUARD_PREFIX + self.partition


#: What a redo returns: the delta of one item from the batch's records after a position.
Redo = Callable[[int], Sequence[GenerationChanges]]
#: ``(write kind, item bytes)`` per write request, for cost accounting (bench).
WriteMeter = Callable[[str, int], None]


# ------------------------------------------------------------------------------ store


class DynamoViewStore:
    """``ViewStore`` on the DynamoDB views table described in this module's docstring."""

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
    ) -> None:
        self._client = client
        self.table_name = table_name
        self.retention = retention or Retention()
        self.fence_seconds = fence_seconds
        self.lease_seconds = lease_seconds
        self.meter = meter
        self._write_threads = write_threads
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._state_cache_seconds = state_cache_seconds
        self._cached_state: tuple[float, DefinitionsState] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, retention: Retention | None = None, **options: Any) -> DynamoViewStore:
        return cls(make_client(settings), settings.views_table, retention=retention, **options)

    # --- plumbing ----------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except BotoCoreError as exc:
            raise StoreUnavailable(f"DynamoDB table {self.table_name}: {action} failed: {exc}") from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise StoreUnavailable(
                    f"DynamoDB table {self.table_name} does not exist; run `pulse tables create`"
                ) from exc
            if code in ("ValidationException", "ConditionalCheckFailedException"):
                raise
            raise StoreUnavailable(f"DynamoDB table {self.table_name}: {action} failed: {exc}") from exc

    def errors(self, action: str) -> AbstractContextManager[None]:
        """Map DynamoDB errors to ``StoreUnavailable`` (other read models of the table use it)."""
        return self._errors(action)

    def _metered(self, kind: str, item: Mapping[str, Any] | None) -> None:
        if self.meter is not None:
            self.meter(kind, item_size(item) if item else 1)

    def _update(self, kind: str, request: dict[str, Any]) -> Item:
        """UpdateItem returning the new item; ``_ConditionFailed`` carries the old one."""
        try:
            with self._errors(f"updating a {kind} item"):
                response = self._client.update_item(
                    TableName=self.table_name,
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **request,
                )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item", {})
            self._metered(kind, old)
            raise _ConditionFailed(old) from exc
        item = response.get("Attributes", {})
        self._metered(kind, item)
        return item

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._write_threads, thread_name_prefix="pulse-views")
            return self._pool

    def _each(self, tasks: Sequence[Callable[[], T]]) -> list[T]:
        """Run the writes on the writer threads; wait for all, then raise the first error."""
        if len(tasks) <= 1:
            return [task() for task in tasks]
        futures = [self._executor().submit(task) for task in tasks]
        results: list[T] = []
        error: BaseException | None = None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error
        return results

    def _query(self, request: dict[str, Any], action: str) -> Iterator[Item]:
        request = {"TableName": self.table_name, **request}
        while True:
            with self._errors(action):
                response = self._client.query(**request)
            yield from response["Items"]
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _scan(self, request: dict[str, Any], action: str) -> Iterator[Item]:
        request = {"TableName": self.table_name, **request}
        while True:
            with self._errors(action):
                response = self._client.scan(**request)
            yield from response["Items"]
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _delete_keys(self, keys: list[Item], action: str) -> None:
        for start in range(0, len(keys), BATCH_WRITE_ITEMS):
            request = {
                self.table_name: [{"DeleteRequest": {"Key": key}} for key in keys[start : start + BATCH_WRITE_ITEMS]]
            }

            def send(pending: dict[str, Any]) -> Mapping[str, Any] | None:
                return self._client.batch_write_item(RequestItems=pending).get("UnprocessedItems")

            with self._errors(action):
                retry_unprocessed(send, request, what=action)

    # --- definitions state ---------------------------------------------------------------

    def definitions_state(self, consistent: bool = True) -> DefinitionsState:
        """The state item; ``consistent=False`` may answer from a cache of one second."""
        now = time.monotonic()
        if not consistent and self._cached_state is not None:
            at, state = self._cached_state
            if now - at < self._state_cache_seconds:
                return state
        with self._errors("reading the definitions state"):
            response = self._client.get_item(TableName=self.table_name, Key=STATE_KEY, ConsistentRead=consistent)
        state = _state_from(response.get("Item"))
        self._cached_state = (now, state)
        return state

    def ensure_state(self, timezone: str) -> DefinitionsState:
        """Create the state item for views computed with day buckets in ``timezone``;
        ``ValueError`` when the views were computed in another zone."""
        try:
            with self._errors("creating the definitions state"):
                self._client.put_item(
                    TableName=self.table_name,
                    Item={
                        **STATE_KEY,
                        "ver": {"N": "0"},
                        "gens": {"M": {}},
                        "next": {"N": "1"},
                        "tz": {"S": timezone},
                    },
                    ConditionExpression="attribute_not_exists(pk)",
                )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        state = self.definitions_state()
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
    ) -> Build:
        """Register a rebuild of ``metrics`` and ``gauges`` for definitions ``version`` into a
        new generation; live batches start writing it for facts received from its fence.

        Raises ``CheckpointConflict`` when the views already reflect ``version``, another
        owner's rebuild holds an unexpired lease, or the state changed meanwhile.
        """
        state = self.definitions_state()
        now = now_micros()
        if version <= state.version:
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
            with self._errors("registering a rebuild"):
                self._client.update_item(
                    TableName=self.table_name,
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
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            raise CheckpointConflict("definitions", "", "the state changed while registering a rebuild") from exc
        self._cached_state = None
        return build

    def _build_condition(self, build: Build) -> dict[str, Any]:
        return {
            "ConditionExpression": "#build.#gen = :gen AND #build.#owner = :owner",
            "ExpressionAttributeNames": {"#build": "build", "#gen": "gen", "#owner": "owner"},
            "ExpressionAttributeValues": {":gen": {"N": str(build.gen)}, ":owner": {"S": build.owner}},
        }

    def _update_build(self, build: Build, expression: str, names: dict[str, str], values: dict[str, Any]) -> bool:
        condition = self._build_condition(build)
        try:
            with self._errors("updating the definitions state"):
                self._client.update_item(
                    TableName=self.table_name,
                    Key=STATE_KEY,
                    UpdateExpression=expression,
                    ConditionExpression=condition["ConditionExpression"],
                    ExpressionAttributeNames={**condition["ExpressionAttributeNames"], **names},
                    ExpressionAttributeValues={**condition["ExpressionAttributeValues"], **values},
                )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
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
        state = self.definitions_state()
        generations = {name: value for name, value in state.generations.items()}
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
        self.bump_markers({PROJECTIONS_MARKER, *map(metric_marker, build.names), *map(gauge_marker, build.names)})

    def abandon_build(self, build: Build) -> None:
        """Forget a rebuild (its items become garbage), unless someone else took it over."""
        self._update_build(build, "REMOVE #build", {}, {})

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
            current = self.checkpoint(projection, partition)
            if current.position != at_position:
                raise CheckpointConflict(projection, partition, f"is at {current.position}, expected {at_position}")
        build = self.begin_build(definitions_version, metrics, gauges, owner or uuid.uuid4().hex, fence_seconds)
        writer = GenerationWriter(self, build)
        try:
            yield writer
        except BaseException:
            self.abandon_build(writer.build)
            raise
        self.finish_build(writer.build)

    # --- checkpoints -------------------------------------------------------------------

    def _checkpoint_from(self, item: Mapping[str, Any], projection: str, partition: str) -> Checkpoint:
        wm = item.get("wm")
        at = item.get("at")
        return Checkpoint(
            projection=projection,
            partition=partition,
            position=seq_of(item["pos"]["S"]) if "pos" in item else 0,
            # One definitions version for all shards: the state item's (see finish_build).
            definitions_version=self.definitions_state(consistent=False).version,
            watermark=None if wm is None else int(wm["N"]),
            updated_at=None if at is None else int(at["N"]),
            events_total=_number(item, "total"),
            events_per_second=float(item["eps"]["N"]) if "eps" in item else 0.0,
        )

    def checkpoint(self, projection: str, partition: str = "") -> Checkpoint:
        with self._errors("reading a checkpoint"):
            response = self._client.get_item(
                TableName=self.table_name,
                Key={"pk": {"S": CHECKPOINT_PK}, "sk": {"S": f"{projection}#{partition}"}},
                ConsistentRead=True,
            )
        return self._checkpoint_from(response.get("Item") or {}, projection, partition)

    def _checkpoint_items(self) -> Iterator[Item]:
        return self._query(
            {
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": CHECKPOINT_PK}},
                "ConsistentRead": True,
            },
            "reading checkpoints",
        )

    def checkpoints(self) -> list[Checkpoint]:
        found = []
        for item in self._checkpoint_items():
            projection, partition = item["sk"]["S"].split("#", 1)
            found.append(self._checkpoint_from(item, projection, partition))
        return found

    def finished_partitions(self, projection: str) -> dict[str, int]:
        """Partitions (shards) read to their end, with when that was recorded (epoch µs)."""
        finished = {}
        for item in self._checkpoint_items():
            name, partition = item["sk"]["S"].split("#", 1)
            if name == projection and "fin" in item:
                finished[partition] = int(item["fin"]["N"])
        return finished

    def mark_finished(self, projection: str, partition: str) -> None:
        with self._errors("marking a shard finished"):
            self._client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": CHECKPOINT_PK}, "sk": {"S": f"{projection}#{partition}"}},
                UpdateExpression="SET #fin = if_not_exists(#fin, :now)",
                ExpressionAttributeNames={"#fin": "fin"},
                ExpressionAttributeValues={":now": {"N": str(now_micros())}},
            )

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
        names = {"#pos": "pos", "#at": "at", "#eps": "eps", "#total": "total"}
        values: dict[str, Any] = {
            ":pos": {"S": seq_key(position)},
            ":at": {"N": str(now_micros())},
            ":eps": {"N": repr(float(events_per_second))},
            ":events": {"N": str(events)},
        }
        expression = "SET #pos = :pos, #at = :at, #eps = :eps"
        if watermark is not None:
            names["#wm"] = "wm"
            values[":wm"] = {"N": str(watermark)}
            expression += ", #wm = :wm"
        try:
            self._update(
                "checkpoint",
                {
                    "Key": {"pk": {"S": CHECKPOINT_PK}, "sk": {"S": f"{projection}#{partition}"}},
                    "UpdateExpression": expression + " ADD #total :events",
                    "ConditionExpression": "attribute_not_exists(#pos) OR #pos < :pos",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                },
            )
        except _ConditionFailed:
            return False
        return True

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

        Each counter and event-type item gets one guarded UpdateItem (see the module
        docstring); ``redo(position)`` recomputes the batch from its records after
        ``position`` for items that already hold part of it (without it such an item
        raises ``CheckpointConflict``). Gauges are conditional Puts. Guards of the
        ``retired`` partitions (shards finished long ago) are removed from the items
        written. Items are written on a few threads; the first error is raised after all
        have finished, and redelivering the batch then completes it exactly.
        """
        guard = _Guard(partition, seq_key(first), seq_key(last))
        counters, types, gauges = self._cells(parts)
        redone: dict[int, tuple[dict, dict, dict]] = {}
        redone_lock = threading.Lock()

        def again(position: int) -> tuple[dict, dict, dict]:
            with redone_lock:
                if position not in redone:
                    assert redo is not None
                    redone[position] = self._cells(redo(position))
                return redone[position]

        tasks: list[Callable[[], str | None]] = []
        for ident, delta in counters.items():
            tasks.append(self._counter_task(ident, delta, guard, again if redo else None, retired))
        for etype, n in types.items():
            tasks.append(self._type_task(etype, n, guard, again if redo else None, retired))
        for (name, key, gen), reading in gauges.items():
            tasks.append(lambda name=name, key=key, gen=gen, reading=reading: self._put_gauge(name, key, gen, reading))
        return {marker for marker in self._each(tasks) if marker is not None}

    def _cells(
        self, parts: Sequence[GenerationChanges]
    ) -> tuple[dict[tuple, CounterDelta], dict[str, int], dict[tuple[str, str, int], GaugeValue]]:
        counters: dict[tuple, CounterDelta] = {}
        types: dict[str, int] = {}
        gauges: dict[tuple[str, str, int], GaugeValue] = {}
        for part in parts:
            for (metric_key, resolution, bucket, dims), delta in part.changes.counters.items():
                gen = generation_of(part, metric_key)
                if gen is None:
                    log.warning("no generation for metric %r: its counters are not written", metric_key)
                    continue
                ident = (metric_key, gen, resolution, bucket, dims)
                counters[ident] = combine(counters.get(ident), delta)
            for etype, n in part.changes.event_types.items():
                types[etype] = types.get(etype, 0) + n
            for (name, key), reading in part.changes.gauges.items():
                gen = generation_of(part, name)
                if gen is None:
                    log.warning("no generation for gauge %r: its readings are not written", name)
                    continue
                if newer(reading, gauges.get((name, key, gen))):
                    gauges[(name, key, gen)] = reading
        return counters, types, gauges

    def _counter_task(
        self, ident: tuple, delta: CounterDelta, guard: _Guard, again, retired
    ) -> Callable[[], str | None]:
        metric_key, gen, resolution, bucket, dims = ident
        key = counter_key(metric_key, gen, resolution, bucket, dims)
        extra: dict[str, Any] = {}
        if "d" in key:
            extra["d"] = key.pop("d")
        expires = _expires_at(self.retention, resolution, bucket)
        if expires is not None:
            extra[TTL_ATTRIBUTE] = {"N": str(expires)}

        def redo(position: int) -> CounterDelta | None:
            return again(position)[0].get(ident)

        marker = metric_marker(metric_key)

        def task() -> str | None:
            changed = self._guarded_add("counter", key, delta, extra, guard, redo if again else None, retired)
            return marker if changed else None

        return task

    def _type_task(self, etype: str, n: int, guard: _Guard, again, retired) -> Callable[[], None]:
        key = {"pk": {"S": TYPES_PK}, "sk": {"S": etype}}

        def redo(position: int) -> CounterDelta | None:
            count = again(position)[1].get(etype)
            return None if not count else CounterDelta(count, 0.0, None, None)

        delta = CounterDelta(n, 0.0, None, None)

        def task() -> None:
            # No marker of its own: the type's built-in count changes with it.
            self._guarded_add("event type", key, delta, {}, guard, redo if again else None, retired)

        return task

    def _add_request(
        self, key: Item, delta: CounterDelta, extra: dict[str, Any], guard: _Guard, condition: str, values: dict
    ) -> dict[str, Any]:
        names = {"#n": "n", "#q": guard.attribute}
        vals: dict[str, Any] = {":n": {"N": str(delta.count)}, ":last": {"S": guard.last}, **values}
        adds = ["#n :n"]
        sets = ["#q = :last"]
        if delta.min is not None or delta.max is not None or delta.sum:
            total = sum_number(delta.sum)
            if total is None:
                names["#ovf"] = "ovf"
                vals[":true"] = {"N": "1"}
                sets.append("#ovf = :true")
            else:
                names["#s"] = "s"
                vals[":s"] = {"N": total}
                adds.append("#s :s")
        for attribute, value in (("lo", delta.min), ("hi", delta.max)):
            if value is not None:
                names[f"#{attribute}"] = attribute
                vals[f":{attribute}"] = {"S": sortable(value)}
                sets.append(f"#{attribute} = if_not_exists(#{attribute}, :{attribute})")
        for attribute, value in extra.items():
            names[f"#x_{attribute}"] = attribute
            vals[f":x_{attribute}"] = value
            sets.append(f"#x_{attribute} = :x_{attribute}")
        return {
            "Key": key,
            "UpdateExpression": f"ADD {', '.join(adds)} SET {', '.join(sets)}",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": vals,
        }

    def _guarded_add(
        self,
        kind: str,
        key: Item,
        delta: CounterDelta,
        extra: dict[str, Any],
        guard: _Guard,
        redo: Callable[[int], CounterDelta | None] | None,
        retired: Collection[str],
    ) -> bool:
        """One guarded ADD (see the module docstring); True when it added anything."""
        condition = "attribute_not_exists(#q) OR #q < :first"
        values: dict[str, Any] = {":first": {"S": guard.first}}
        batch_delta = delta
        while True:
            try:
                try:
                    item = self._update(kind, self._add_request(key, delta, extra, guard, condition, values))
                except ClientError as exc:
                    if "precision" not in str(exc) and "overflow" not in str(exc).lower():
                        raise
                    # The stored sum outgrew DynamoDB's 38 digits: mark it unknown, keep counting.
                    huge = CounterDelta(delta.count, math.inf, delta.min, delta.max)
                    item = self._update(kind, self._add_request(key, huge, extra, guard, condition, values))
            except _ConditionFailed as failed:
                stored = failed.item.get(guard.attribute, {}).get("S")
                self._fold_extremes(kind, key, failed.item, batch_delta)
                if stored is None or stored >= guard.last:
                    return False  # the item holds the whole batch already: a redelivery
                if redo is None:
                    raise CheckpointConflict(
                        "views",
                        guard.partition,
                        f"item {key['pk']['S']} {key['sk']['S']} holds records up to {seq_of(stored)}, inside this"
                        " batch; resend the batch as first delivered",
                    ) from None
                # The item holds the batch's records up to `stored`: add only those after it.
                remaining = redo(seq_of(stored))
                if remaining is None or not remaining.count:
                    return False
                delta = remaining
                condition = "#q = :stored"
                values = {":stored": {"S": stored}}
                continue
            self._fold_extremes(kind, key, item, batch_delta)
            self._drop_retired_guards(kind, key, item, guard, retired)
            return True

    def _fold_extremes(self, kind: str, key: Item, item: Mapping[str, Any], delta: CounterDelta) -> None:
        """Fold the batch's min and max into the item when they go beyond what it holds:
        one conditional SET for both when both do, else one for the one that does."""
        needed: list[tuple[str, str, str]] = []
        for attribute, value, beyond in (("lo", delta.min, ">"), ("hi", delta.max, "<")):
            if value is None:
                continue
            wanted = sortable(value)
            stored = item.get(attribute, {}).get("S")
            if stored is None or (stored > wanted if beyond == ">" else stored < wanted):
                needed.append((attribute, wanted, beyond))
        if len(needed) == 2 and self._try_fold(kind, key, needed):
            return
        for one in needed:
            # Another writer may have gone further on one of the two: each on its own.
            self._try_fold(kind, key, [one])

    def _try_fold(self, kind: str, key: Item, folds: list[tuple[str, str, str]]) -> bool:
        """SET the attributes unless the item already holds something further (False then:
        min and max only move one way)."""
        try:
            self._update(
                f"{kind} min/max fold",
                {
                    "Key": key,
                    "UpdateExpression": "SET " + ", ".join(f"#{a} = :{a}" for a, _, _ in folds),
                    "ConditionExpression": "attribute_exists(pk) AND "
                    + " AND ".join(f"(attribute_not_exists(#{a}) OR #{a} {beyond} :{a})" for a, _, beyond in folds),
                    "ExpressionAttributeNames": {f"#{a}": a for a, _, _ in folds},
                    "ExpressionAttributeValues": {f":{a}": {"S": wanted} for a, wanted, _ in folds},
                },
            )
        except _ConditionFailed:
            return False
        return True

    def _drop_retired_guards(
        self, kind: str, key: Item, item: Mapping[str, Any], guard: _Guard, retired: Collection[str]
    ) -> None:
        stale = [
            name
            for name in item
            if name.startswith(GUARD_PREFIX) and name != guard.attribute and name[len(GUARD_PREFIX) :] in retired
        ]
        if not stale:
            return
        names = {f"#g{i}": name for i, name in enumerate(stale)}
        with suppress(_ConditionFailed):  # the item is gone (TTL): nothing to drop
            self._update(
                f"{kind} guard removal",
                {
                    "Key": key,
                    "UpdateExpression": "REMOVE " + ", ".join(names),
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeNames": names,
                },
            )

    def _put_gauge(self, name: str, key: str, gen: int, reading: GaugeValue) -> str | None:
        """The reading unless a later one is stored; the gauge's marker when it was written."""
        item = {
            **gauge_key(name, gen, key),
            "v": {"S": repr(float(reading.value))},
            "t": {"N": str(reading.occurred_at)},
            "e": {"S": reading.event_id},
        }
        try:
            with self._errors("writing a gauge"):
                self._client.put_item(
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk) OR #t < :t OR (#t = :t AND #e < :e)",
                    ExpressionAttributeNames={"#t": "t", "#e": "e"},
                    ExpressionAttributeValues={":t": item["t"], ":e": item["e"]},
                )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            # A reading with a later (occurredAt, id) is stored: last writer wins.
            self._metered("gauge", item)
            return None
        self._metered("gauge", item)
        return gauge_marker(name)

    def apply(
        self,
        projection: str,
        partition: str,
        changes: ViewChanges,
        after: int,
        upto: int,
        definitions_version: int,
        events_per_second: float = 0.0,
    ) -> bool:
        """The port's apply: ``changes`` of the partition's records ``(after, upto]``.

        Differs from SQLite: the items, not the checkpoint, make it exactly once (see the
        module docstring). Returns False without writing when the checkpoint is at or
        past ``upto``; a checkpoint behind ``after`` is not an error (a crash lost the
        last checkpoint write; the items still know what they hold). Raises
        ``CheckpointConflict`` when the views reflect another definitions version, when a
        rebuild is running (its generation needs each fact's receipt time, which
        ``ViewChanges`` do not carry: the stream projector handles that case), or when
        an item holds part of the batch (resend it with its first boundaries). The
        changes must not count facts received before an active generation's fence.
        """
        state = self.definitions_state()
        if state.version != definitions_version:
            raise CheckpointConflict(
                projection,
                partition,
                f"views reflect definitions version {state.version}, the batch was projected with"
                f" {definitions_version}",
            )
        if state.build is not None:
            raise CheckpointConflict(projection, partition, f"a rebuild to version {state.build.version} is running")
        current = self.checkpoint(projection, partition)
        if upto != after and current.position >= upto:
            return False
        generations = {name: g.gen for name, g in state.generations.items()}
        changed: set[str] = set()
        if upto > after:
            changed = self.write_batch(partition, after + 1, upto, [GenerationChanges(changes, generations)])
        watermark = later(current.watermark, changes.watermark)
        if self.save_checkpoint(projection, partition, upto, watermark, changes.events, events_per_second):
            changed.add(PROJECTIONS_MARKER)
        self.bump_markers(changed)
        return True

    # --- housekeeping --------------------------------------------------------------------

    def collect_garbage(self) -> int:
        """Delete counter and gauge items of generations no name uses any more (replaced
        or abandoned rebuilds). One Scan of the table: run it after a switch."""
        state = self.definitions_state()
        live = {(name, str(g.gen)) for name, g in state.generations.items()}
        if state.build is not None:
            live |= {(name, str(state.build.gen)) for name in state.build.names}
        garbage = []
        for item in self._scan(
            {
                "ProjectionExpression": "pk, sk",
                "FilterExpression": "begins_with(pk, :c) OR begins_with(pk, :g)",
                "ExpressionAttributeValues": {":c": {"S": COUNTER_PREFIX}, ":g": {"S": GAUGE_PREFIX}},
            },
            "looking for replaced generations",
        ):
            pk = item["pk"]["S"]
            if pk.startswith(COUNTER_PREFIX):
                name, gen, _, _ = parse_counter_pk(pk)
            else:
                name, gen = pk[len(GAUGE_PREFIX) :].rsplit("#", 1)
            if gen == str(BUILTIN_GENERATION) or (name, gen) in live or int(gen) >= state.next_gen:
                continue
            garbage.append({"pk": item["pk"], "sk": item["sk"]})
        self._delete_keys(garbage, "deleting replaced generations")
        return len(garbage)

    def prune(self, resolution: str, before: int) -> int:
        """Delete counter cells of ``resolution`` with bucket < ``before``. DynamoDB's TTL
        (``expiresAt``) does this by itself; this scans, for an explicit cut."""
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        doomed = []
        touched: set[str] = set()
        for item in self._scan(
            {
                "ProjectionExpression": "pk, sk",
                "FilterExpression": "begins_with(pk, :c) AND contains(pk, :res)",
                "ExpressionAttributeValues": {":c": {"S": COUNTER_PREFIX}, ":res": {"S": f"#{resolution}#"}},
            },
            "pruning counters",
        ):
            metric_key, _, found, _ = parse_counter_pk(item["pk"]["S"])
            if found == resolution and _bucket_of(item["sk"]["S"]) < before:
                doomed.append(item)
                touched.add(metric_marker(metric_key))
        self._delete_keys(doomed, "pruning counters")
        if doomed:
            self.bump_markers(touched)
        return len(doomed)

    # --- change markers ----------------------------------------------------------------

    def bump_markers(self, keys: Collection[str]) -> None:
        """Move each marker one version up; call once the data writes behind them succeeded."""

        def bump(key: str) -> None:
            with self._errors("moving a change marker"):
                response = self._client.update_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": MARKERS_PK}, "sk": {"S": key}},
                    UpdateExpression="ADD #v :one",
                    ExpressionAttributeNames={"#v": "v"},
                    ExpressionAttributeValues={":one": {"N": "1"}},
                    ReturnValues="ALL_NEW",
                )
            self._metered("change marker", response.get("Attributes"))

        self._each([lambda key=key: bump(key) for key in sorted(keys)])

    def change_markers(self) -> dict[str, int]:
        """Every change marker, ``{key: version}``, in one strongly consistent Query."""
        items = self._query(
            {
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": MARKERS_PK}},
                "ConsistentRead": True,
            },
            "reading change markers",
        )
        return {item["sk"]["S"]: int(item["v"]["N"]) for item in items}

    # --- reads -------------------------------------------------------------------------

    def _generation(self, metric: str) -> int | None:
        if metric.startswith(BUILTIN_PREFIX):
            return BUILTIN_GENERATION
        found = self.definitions_state(consistent=False).generations.get(metric)
        return None if found is None else found.gen

    def _counter_items(self, metric: str, gen: int, resolution: str, start: int, end: int) -> Iterator[Item]:
        low = bucket_text(max(start, _MIN_BUCKET))
        high = bucket_text(min(end, _MAX_BUCKET) - 1) + "~"  # '~' sorts after the '#' of every cell
        parts = slices(resolution, start, end)
        if parts is None:
            prefix = f"{COUNTER_PREFIX}{metric}#{gen}#{resolution}#"
            yield from self._scan(
                {
                    "FilterExpression": "begins_with(pk, :prefix) AND sk BETWEEN :low AND :high",
                    "ExpressionAttributeValues": {":prefix": {"S": prefix}, ":low": {"S": low}, ":high": {"S": high}},
                },
                "reading counters",
            )
            return
        for part in parts:
            yield from self._query(
                {
                    "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
                    "ExpressionAttributeValues": {
                        ":pk": {"S": f"{COUNTER_PREFIX}{metric}#{gen}#{resolution}#{part}"},
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
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        gen = self._generation(metric)
        if gen is None or start >= end:
            return []
        # Cells past their retention stay readable until TTL deletes them (within days),
        # as SQLite's stay until its next prune.
        items = self._counter_items(metric, gen, resolution, start, end)
        return aggregate_cells((cell for cell in map(_counter_cell, items) if start <= cell[0] < end), where, group_by)

    def read_gauges(self, name: str, keys: Sequence[str] | None = None) -> list[GaugeReading]:
        state = self.definitions_state(consistent=False)
        found = state.generations.get(name)
        if found is None:
            return []
        if keys is None:
            items = list(
                self._query(
                    {
                        "KeyConditionExpression": "pk = :pk",
                        "ExpressionAttributeValues": {":pk": {"S": f"{GAUGE_PREFIX}{name}#{found.gen}"}},
                    },
                    "reading gauges",
                )
            )
        else:
            items = self._batch_get([gauge_key(name, found.gen, key) for key in sorted(set(keys))])
        readings = [
            GaugeReading(
                name,
                item["k"]["S"] if "k" in item else item["sk"]["S"],
                float(item["v"]["S"]),
                int(item["t"]["N"]),
                item["e"]["S"],
            )
            for item in items
        ]
        return sorted(readings, key=lambda r: r.key)

    def _batch_get(self, keys: list[Item]) -> list[Item]:
        found: list[Item] = []
        for start in range(0, len(keys), BATCH_GET_KEYS):
            chunk = [{"pk": key["pk"], "sk": key["sk"]} for key in keys[start : start + BATCH_GET_KEYS]]

            def send(request: dict[str, Any]) -> Mapping[str, Any] | None:
                response = self._client.batch_get_item(RequestItems=request)
                found.extend(response["Responses"].get(self.table_name, []))
                return response.get("UnprocessedKeys")

            with self._errors("reading gauges"):
                retry_unprocessed(send, {self.table_name: {"Keys": chunk}}, what="reading gauges")
        return found

    def event_types(self) -> dict[str, int]:
        items = self._query(
            {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": TYPES_PK}}},
            "reading event types",
        )
        return {item["sk"]["S"]: int(item["n"]["N"]) for item in items}

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        self._client.close()


class GenerationWriter:
    """What ``DynamoViewStore.rebuild`` yields: adds recomputed changes to the new
    generation, one guarded page per call (a resent request is then a no-op)."""

    def __init__(self, store: DynamoViewStore, build: Build) -> None:
        self._store = store
        self.build = build
        self.pages = 0

    @property
    def fence(self) -> int:
        return self.build.fence

    def includes(self, event: RecordedEvent) -> bool:
        """Whether the rebuild counts this fact (received before the fence)."""
        return epoch_micros(event.received_at) < self.build.fence

    def renew(self, until: float | None = None) -> None:
        """Keep the lease: extend it when half of it is gone, or to ``until`` (epoch s)."""
        if until is not None or self.build.lease - now_micros() < self._store.lease_seconds * 1e6 / 2:
            self.build = self._store.renew_build(self.build, until)

    def __call__(self, changes: ViewChanges) -> None:
        self.renew()
        self.pages += 1
        self._store.write_batch(REBUILD_PARTITION, self.pages, self.pages, [GenerationChanges(changes, self.build.gen)])


__all__ = [
    "Build",
    "DefinitionsState",
    "DynamoViewStore",
    "Generation",
    "GenerationChanges",
    "GenerationWriter",
    "seq_key",
    "slices",
    "sortable",
]
