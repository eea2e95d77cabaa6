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
``ArchiveColumn`` (``PULSE_ARCHIVE_COLUMNS``): a property's value as that type, null
where missing or of another kind.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from domain.events import RecordedEvent
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

    def value(self, properties: dict[str, Any]) -> Any:
        value = properties.get(self.name)
        if value is None:
            return None
        kind = self.arrow_type
        if pa.types.is_floating(kind):
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
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


def hour_of(event: RecordedEvent) -> HourKey:
    at = event.occurred_at.astimezone(UTC)
    return HourKey(event.type, at.strftime("%Y-%m-%d"), f"{at.hour:02d}")


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


def to_table(events: Sequence[RecordedEvent], columns: Sequence[ArchiveColumn] = ()) -> pa.Table:
    """The facts as rows sorted by ``occurredAt`` then id."""
    ordered = sorted(events, key=lambda e: (e.occurred_at, e.id))
    props = [dict(e.properties) for e in ordered]
    data: dict[str, list[Any]] = {
        "id": [e.id for e in ordered],
        "type": [e.type for e in ordered],
        "occurred_at": [e.occurred_at for e in ordered],
        "received_at": [e.received_at for e in ordered],
        "source": [e.source for e in ordered],
        "properties": [dumps(p) for p in props],
    }
    for column in columns:
        data[column.name] = [column.value(p) for p in props]
    return pa.table(data, schema=schema(columns))


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=COMPRESSION, write_statistics=True)
    return sink.getvalue()


def read_table(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def files_of(
    events: Sequence[RecordedEvent], partition: str, first: int, last: int, columns: Sequence[ArchiveColumn] = ()
) -> dict[str, bytes]:
    """The archive files of the facts of positions ``first..last`` of ``partition``: one
    per Hive partition (relative key → Parquet bytes)."""
    groups: dict[HourKey, list[RecordedEvent]] = {}
    for event in events:
        groups.setdefault(hour_of(event), []).append(event)
    name = file_name(partition, first, last)
    return {f"{hour.folder}/{name}": parquet_bytes(to_table(group, columns)) for hour, group in groups.items()}


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
