"""The archive's pure half: facts in, Parquet files (key and bytes) out.

Layout under the archive's prefix (Hive partitions by ``occurredAt`` in UTC)::

    type=<type>/date=<YYYY-MM-DD>/hour=<HH>/<partition>-<first>-<last>.parquet

``<partition>`` is ``log`` for the embedded store's one global order, else the DynamoDB
shard id; ``<first>-<last>`` are the log positions the flush covered (every fact of that
range and of that type and hour is in the file). The name derives from the log only, and
the bytes from the facts only (rows sorted by ``occurredAt`` then id, a fixed schema, a
fixed writer), so writing the same range again writes the same key with the same bytes.

Compaction merges an hour's files of one partition into one named by the union of their
ranges. The rule readers apply (``live_files``): a file whose range lies inside another
file's range, same folder and partition, is covered by it and skipped; so while both
exist (between writing a merged file and deleting the small ones, or after a crash
there) no row is read twice.

Columns: ``id``, ``type``, ``occurred_at`` and ``received_at`` (timestamp[us, UTC]),
``source``, ``properties`` (the JSON text as stored), then one typed column per
``ArchiveColumn``: a property's value as that type, null where missing or of another
kind. The typed columns are those ``PULSE_ARCHIVE_COLUMNS`` names, then one per
property a metric or gauge definition names (``definition_columns``): a file has the
columns of the definitions when it was written, and readers union files by name.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from domain.events import RecordedEvent
from domain.metrics import COUNT, GaugeDefinition, MetricDefinition
from storage.codec import dumps

PROJECTION = "archive"
#: The partition name in keys for a log with one global order (FeedBatch.partition "").
GLOBAL_PARTITION = "log"
COMPRESSION = "zstd"
#: Where the archive keeps its checkpoints, under its prefix (not a Hive partition).
STATE_FOLDER = "_state"

TIMESTAMP = pa.timestamp("us", tz="UTC")
#: The types a typed column may have, by the names ``PULSE_ARCHIVE_COLUMNS`` uses.
TYPES: dict[str, pa.DataType] = {
    "double": pa.float64(),
    "float": pa.float64(),
    "bigint": pa.int64(),
    "int": pa.int64(),
    "int64": pa.int64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
    "bool": pa.bool_(),
}
BASE_COLUMNS = ("id", "type", "occurred_at", "received_at", "source", "properties")


@dataclass(frozen=True, slots=True)
class ArchiveColumn:
    """A typed column: the value of property ``name`` as ``type`` (a ``TYPES`` name)."""

    name: str
    type: str

    @property
    def arrow_type(self) -> pa.DataType:
        return TYPES[self.type]

    def values(self, facts_properties: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The column's cells of the facts with these properties (``value`` of each; the
        common kinds of value take a fast path: this runs once per fact and column)."""
        name = self.name
        kind = self.arrow_type
        if pa.types.is_floating(kind):
            cells = [p.get(name) for p in facts_properties]
            return [v if type(v) is float else None if v is None else _as_double(v) for v in cells]
        if pa.types.is_string(kind):
            cells = [p.get(name) for p in facts_properties]
            return [v if type(v) is str else None if v is None else dumps(v) for v in cells]
        return [self.value(p) for p in facts_properties]

    def value(self, properties: Mapping[str, Any]) -> Any:
        value = properties.get(self.name)
        if value is None:
            return None
        kind = self.arrow_type
        if pa.types.is_floating(kind):
            return value if type(value) is float else _as_double(value)
        if pa.types.is_integer(kind):
            if isinstance(value, bool):
                return None
            if isinstance(value, int):
                return value if -(2**63) <= value < 2**63 else None
            return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2**63 else None
        if pa.types.is_boolean(kind):
            return value if isinstance(value, bool) else None
        # Text, as dimensions compare: strings as sent, anything else as JSON writes it.
        return value if isinstance(value, str) else dumps(value)


def _as_double(value: Any) -> float | None:
    """A number that is not a float as a double column's cell (None: not a number)."""
    if type(value) is not int:
        return None  # text, boolean, list...
    try:
        return float(value)
    except OverflowError:
        return None  # an integer beyond any double


def parse_columns(text: str) -> tuple[ArchiveColumn, ...]:
    """``"amount:double,category:string"`` → typed columns; ``ValueError`` when malformed."""
    columns: list[ArchiveColumn] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, kind = part.rpartition(":")
        name, kind = name.strip(), kind.strip().lower()
        if not sep or not name or kind not in TYPES:
            raise ValueError(
                f"PULSE_ARCHIVE_COLUMNS: expected property:type with type one of {', '.join(TYPES)}, got {part!r}"
            )
        if name in BASE_COLUMNS or name in (c.name for c in columns) or name in ("date", "hour"):
            raise ValueError(f"PULSE_ARCHIVE_COLUMNS: column {name!r} is taken")
        columns.append(ArchiveColumn(name, kind))
    return tuple(columns)


#: Names a typed column cannot take: the base columns and the Hive partitions.
TAKEN = frozenset((*BASE_COLUMNS, "date", "hour"))


def definition_columns(
    metrics: Iterable[MetricDefinition],
    gauges: Iterable[GaugeDefinition],
    configured: Sequence[ArchiveColumn] = (),
) -> tuple[ArchiveColumn, ...]:
    """The typed columns of the archive: ``configured`` (``PULSE_ARCHIVE_COLUMNS``) as
    set, then one per property a metric or a gauge names, by name: ``double`` for a value
    (a metric's value property, a gauge's value), ``string`` for a dimension or a gauge's
    key (as dimensions compare them). A property named both ways is a ``double``; names
    the configured columns or the base columns take are left out."""
    kinds: dict[str, str] = {}
    for metric in metrics:
        if metric.builtin:
            continue
        for dimension in metric.dimensions:
            kinds.setdefault(dimension, "string")
        if metric.aggregation != COUNT and metric.value_property:
            kinds[metric.value_property] = "double"
    for gauge in gauges:
        if gauge.key_property:
            kinds.setdefault(gauge.key_property, "string")
        kinds[gauge.value_property] = "double"
    taken = TAKEN | {c.name for c in configured}
    derived = (ArchiveColumn(name, kind) for name, kind in sorted(kinds.items()) if name not in taken)
    return (*configured, *derived)


def schema(columns: Sequence[ArchiveColumn] = ()) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("type", pa.string(), nullable=False),
            pa.field("occurred_at", TIMESTAMP, nullable=False),
            pa.field("received_at", TIMESTAMP, nullable=False),
            pa.field("source", pa.string()),
            pa.field("properties", pa.string(), nullable=False),
            *(pa.field(c.name, c.arrow_type) for c in columns),
        ]
    )


class HourKey(NamedTuple):
    """A Hive partition of the archive."""

    type: str
    date: str  # YYYY-MM-DD
    hour: str  # HH

    @property
    def folder(self) -> str:
        return f"type={self.type}/date={self.date}/hour={self.hour}"


HOUR_MICROS = 3_600_000_000


def hour_key(event_type: str, hour: int) -> HourKey:
    """The partition of ``event_type`` facts in the UTC hour ``hour`` (epoch hours)."""
    at = datetime.fromtimestamp(hour * 3600, UTC)
    return HourKey(event_type, at.strftime("%Y-%m-%d"), f"{at.hour:02d}")


def hour_of(event: RecordedEvent) -> HourKey:
    return hour_key(event.type, event.occurred_micros // HOUR_MICROS)


def join(prefix: str, key: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{key}" if prefix else key


def file_name(partition: str, first: int, last: int) -> str:
    return f"{partition or GLOBAL_PARTITION}-{first}-{last}.parquet"


class FileRange(NamedTuple):
    folder: str
    partition: str
    first: int
    last: int


def parse_key(key: str) -> FileRange | None:
    """The folder, partition and range of an archive file's key (None: not one)."""
    folder, _, name = key.rpartition("/")
    if not name.endswith(".parquet"):
        return None
    try:
        partition, first, last = name[: -len(".parquet")].rsplit("-", 2)
        return FileRange(folder, partition, int(first), int(last))
    except ValueError:
        return None


def live_files(keys: Iterable[str]) -> list[str]:
    """The archive files readers read: every file not covered by another (see the module
    docstring), sorted."""
    ranges = [(key, found) for key in keys if (found := parse_key(key)) is not None]
    by_group: dict[tuple[str, str], list[tuple[str, FileRange]]] = {}
    for key, found in ranges:
        by_group.setdefault((found.folder, found.partition), []).append((key, found))
    live: list[str] = []
    for group in by_group.values():
        for key, found in group:
            covered = any(
                other is not found
                and other.first <= found.first
                and found.last <= other.last
                and (other.first, other.last) != (found.first, found.last)
                for _, other in group
            )
            if not covered:
                live.append(key)
    return sorted(live)


def _unsorted_table(
    events: Sequence[RecordedEvent], columns: Sequence[ArchiveColumn]
) -> tuple[pa.Table, Sequence[str], Sequence[int]]:
    """The facts as Arrow columns in the order given, with their types and ``occurredAt``
    (epoch µs) as Python sequences: built column by column from the lean rows
    (``zip(*events)`` transposes them in C), no Python object per cell beyond the values."""
    ids, types, occurred, properties, sources, _, _, _, received, texts = zip(*events, strict=True)
    if None in texts:  # an adapter without the stored text (or a fact built in a test)
        texts = [dumps(dict(p)) if t is None else t for p, t in zip(properties, texts, strict=True)]
    data: dict[str, Any] = {
        "id": ids,
        "type": types,
        "occurred_at": occurred,
        "received_at": received,
        "source": sources,
        "properties": texts,
    }
    for column in columns:
        data[column.name] = column.values(properties)
    arrow = schema(columns)
    arrays = [pa.array(values, type=f.type) for values, f in zip(data.values(), arrow, strict=True)]
    return pa.Table.from_arrays(arrays, schema=arrow), types, occurred


def parquet_bytes(table: pa.Table) -> bytes:
    """The table as a Parquet file: zstd, column statistics, plain encoding. No column gets
    a dictionary page: zstd alone packs the repeated values (type, source, dimensions) as
    well, so files of an hour of 1,200 and of 8,300 sales came out a sixth smaller than
    with dictionaries and encoded a fifth faster (``docs/benchmarks.md``)."""
    # One chunk per column: the writer cuts pages where a chunk ends, so a file's bytes
    # would otherwise depend on the batches its rows were buffered in, not on the rows.
    if any(column.num_chunks > 1 for column in table.columns):
        table = table.combine_chunks()
    sink = pa.BufferOutputStream()  # an Arrow buffer, not a Python file: no GIL per write
    pq.write_table(table, sink, compression=COMPRESSION, write_statistics=True, use_dictionary=False)
    return sink.getvalue().to_pybytes()


def read_table(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


#: The buffered rows' hour column: not written to files (nor used to sort them: the hour
#: is the ``occurredAt``'s), it keeps ``Rows.table.nbytes``, what ``PULSE_ARCHIVE_MAX_BYTES``
#: bounds, as it was measured.
_HOUR = "__hour"


class Rows(NamedTuple):
    """Facts as Arrow columns ready to be written (what the archive buffers: a few hundred
    bytes per fact, where the facts as Python objects take several times that): the table
    in log order with each fact's hour, how many fall in each (type, hour) file, and the
    typed columns it was built with."""

    table: pa.Table
    groups: Counter[tuple[str, int]]
    columns: tuple[ArchiveColumn, ...]


def rows_of(events: Sequence[RecordedEvent], columns: Sequence[ArchiveColumn] = ()) -> Rows:
    table, types, occurred = _unsorted_table(events, columns)
    hours = [micros // HOUR_MICROS for micros in occurred]
    table = table.append_column(_HOUR, pa.array(hours, pa.int64()))
    if types.count(types[0]) == len(types):  # a page of one type (counted in C): no pair per fact
        groups = Counter({(types[0], hour): n for hour, n in Counter(hours).items()})
    else:
        groups = Counter(zip(types, hours, strict=True))
    return Rows(table, groups, tuple(columns))


def retyped(rows: Rows, columns: Sequence[ArchiveColumn]) -> Rows:
    """The rows with the typed columns of ``columns`` instead of their own (a definition
    changed while they were buffered), read from the properties' JSON."""
    properties = [json.loads(text) for text in rows.table.column("properties").to_pylist()]
    table = rows.table.select(list(BASE_COLUMNS))
    for column in columns:
        table = table.append_column(
            pa.field(column.name, column.arrow_type), pa.array(column.values(properties), column.arrow_type)
        )
    return Rows(table.append_column(_HOUR, rows.table.column(_HOUR)), rows.groups, tuple(columns))


def files_of_rows(parts: Sequence[Rows], partition: str, first: int, last: int) -> dict[str, bytes]:
    """The archive files of the facts of positions ``first..last`` of ``partition``, buffered
    as ``Rows`` built with the same typed columns: one per Hive partition (relative key →
    Parquet bytes); see ``iter_files_of_rows``."""
    return dict(iter_files_of_rows(parts, partition, first, last))


def iter_files_of_rows(parts: Sequence[Rows], partition: str, first: int, last: int) -> Iterator[tuple[str, bytes]]:
    """``files_of_rows`` one file at a time, in key order (a writer can store one file
    while the next is encoded).

    One Arrow table of every fact, in (type, ``occurredAt``, id) order (which is also
    (type, hour) order: the hour is the ``occurredAt``'s), sorted only when it is not in
    that order already (catch-up reads most facts in time order); each Hive partition is
    then a slice of it, its rows in ``occurredAt``, id order."""
    if not parts:
        return
    table = parts[0].table if len(parts) == 1 else pa.concat_tables([part.table for part in parts])
    table = table.drop_columns([_HOUR])
    if not _in_order(table):
        table = table.take(pc.sort_indices(table, sort_keys=_ORDER))
    groups: Counter[tuple[str, int]] = Counter()
    for part in parts:
        groups.update(part.groups)
    # Arrow sorts strings by their UTF-8 bytes, which is Python's code point order, so the
    # sorted group keys give the slices' order.
    name = file_name(partition, first, last)
    offset = 0
    for (event_type, hour), size in sorted(groups.items()):
        yield f"{hour_key(event_type, hour).folder}/{name}", parquet_bytes(table.slice(offset, size))
        offset += size


_ORDER = [("type", "ascending"), ("occurred_at", "ascending"), ("id", "ascending")]


def _in_order(table: pa.Table) -> bool:
    """Whether the rows are in ``_ORDER`` already: each row's (type, occurredAt, id) is
    at most the next one's, compared column by column in C (as ``sort_indices`` compares)."""
    n = table.num_rows
    if n < 2:
        return True
    keys = [table.column(name) for name, _ in _ORDER]
    here = [key.slice(0, n - 1) for key in keys]
    after = [key.slice(1) for key in keys]
    # Lexicographic, from the last key up: (a, rest) <= (b, rest') iff a < b or a == b and rest <= rest'.
    ordered = pc.less_equal(here[-1], after[-1])
    for a, b in zip(reversed(here[:-1]), reversed(after[:-1]), strict=True):
        ordered = pc.or_(pc.less(a, b), pc.and_(pc.equal(a, b), ordered))
    return bool(pc.all(ordered).as_py())


def state_key(prefix: str, projection: str, partition: str) -> str:
    return join(prefix, f"{STATE_FOLDER}/{projection}/{partition or GLOBAL_PARTITION}.json")


@dataclass(frozen=True, slots=True)
class ArchiveState:
    """A partition's durable checkpoint: every fact up to ``position`` is in a file.
    ``pending``: the range ``(first, last)`` of a flush that may have written some of its
    files; it must be written again exactly (same range, so same keys and bytes)."""

    position: int = 0
    pending: tuple[int, int] | None = None
    events_total: int = 0
    updated_at: str | None = None

    def encode(self) -> bytes:
        return json.dumps(
            {
                "position": self.position,
                "pending": list(self.pending) if self.pending else None,
                "events_total": self.events_total,
                "updated_at": datetime.now(UTC).isoformat(),
            }
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> ArchiveState:
        raw = json.loads(data)
        pending = raw.get("pending")
        return cls(
            position=int(raw["position"]),
            pending=(int(pending[0]), int(pending[1])) if pending else None,
            events_total=int(raw.get("events_total", 0)),
            updated_at=raw.get("updated_at"),
        )
