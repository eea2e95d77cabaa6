"""The items of the DynamoDB views table: their keys and how values are encoded in them.

All read models live in one table (keys ``pk``/``sk``, both strings). Pure: no I/O.

Item layout
-----------
- counter cell   pk ``C#<metric key>#<generation>#<resolution>#<slice>``,
                 sk ``<bucket + 10^11, 12 digits>#<dimension values as JSON>``.
  The slice is the UTC day of the bucket for minutes, its UTC month for hours and its
  UTC year for days, so a series of 60 minutes or 24 hours reads one or two partitions
  with one Query each (sk BETWEEN), and the live writes of one metric spread over three
  partitions (one per resolution). Attributes: ``n`` count and ``s`` sum (numbers, ADDed),
  ``lo``/``hi`` min and max (order-preserving text of the float, see ``sortable``),
  ``ovf`` once the sum outgrew DynamoDB's numbers, ``expiresAt`` (TTL: bucket +
  retention; day cells none), ``q#<partition>`` the guard of each stream shard that
  wrote the cell, and ``d`` the dimension JSON when it was too long for the sort key
  (which then holds its SHA-256).
- gauge reading  pk ``G#<name>#<generation>``, sk the key (its SHA-256 when too long,
  the key then in ``k``); ``v`` value, ``t`` occurredAt (epoch µs), ``e`` event id.
- event type     pk ``T``, sk the type; ``n`` facts (guarded like counters).
- checkpoint     pk ``CP``, sk ``<projection>#<partition>``; position as ``seq_key`` text,
                 watermark, totals; ``fin`` once the shard was read to its end.
- definitions    pk ``STATE``, sk ``definitions``: the definitions version the views
  reflect, the active generation of every metric and gauge, a rebuild in progress.
- change marker  pk ``MK``, sk the marker key (``metric:<key>``, ``gauge:<name>``,
  ``projections``); ``v`` ADDed by one after writes that changed its data succeeded (a
  redelivery changes nothing and moves nothing), read with one strongly consistent
  Query (``change_markers``, what live subscriptions poll).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import Any

from domain.metrics import HOUR, MINUTE
from domain.ports import CounterDelta, GaugeReading
from projections.buckets import Retention
from storage.dynamodb_base import MAX_SORT_KEY_BYTES

Item = dict[str, Any]

STATE_KEY = {"pk": {"S": "STATE"}, "sk": {"S": "definitions"}}
CHECKPOINT_PK = "CP"
MARKERS_PK = "MK"
TYPES_PK = "T"
#: The pseudo-name under which the per-type totals get a generation in the definitions
#: state (a replay rebuilds them); not a valid metric name. Generation 0 lives at pk ``T``.
TYPES_NAME = "~types"


def types_pk(gen: int) -> str:
    """The pk of the per-type totals of generation ``gen`` (0: the first, ``T``)."""
    return TYPES_PK if gen == 0 else f"{TYPES_PK}#{gen}"


COUNTER_PREFIX = "C#"
GAUGE_PREFIX = "G#"
GUARD_PREFIX = "q#"

BUCKET_OFFSET = 10**11  # buckets from year ~1200 BC to AD 30,000 as 12 non-negative digits
BUCKET_DIGITS = 12
MIN_BUCKET = int(datetime(1, 1, 2, tzinfo=UTC).timestamp())
MAX_BUCKET = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp())

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


def number(item: Mapping[str, Any], name: str, default: int = 0) -> int:
    """An integer attribute, ``default`` when the item has none."""
    value = item.get(name)
    return default if value is None else int(value["N"])


# --------------------------------------------------------------------- counter cells


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
    start, end = max(start, MIN_BUCKET), min(end, MAX_BUCKET)
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


def counter_prefix(metric_key: str, generation: int, resolution: str) -> str:
    """The partition keys of one metric's cells of one resolution, less the slice."""
    return f"{COUNTER_PREFIX}{metric_key}#{generation}#{resolution}#"


def _json(values: Sequence[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))


def counter_key(metric_key: str, generation: int, resolution: str, bucket: int, dims: Sequence[str]) -> Item:
    """The key of a counter cell, plus ``d`` when the dimensions do not fit the sort key."""
    dims_text = _json(dims)
    sk = f"{bucket_text(bucket)}#{dims_text}"
    key: Item = {
        "pk": {"S": counter_prefix(metric_key, generation, resolution) + slice_of(resolution, bucket)},
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


def bucket_of(sk: str) -> int:
    """The bucket of a counter cell's sort key."""
    return int(sk[:BUCKET_DIGITS]) - BUCKET_OFFSET


def _dims_of(item: Mapping[str, Any]) -> list[str]:
    tail = item["sk"]["S"][BUCKET_DIGITS + 1 :]
    return json.loads(item["d"]["S"] if tail.startswith("~") else tail)


def counter_cell(item: Mapping[str, Any]) -> tuple[int, tuple[str, ...], CounterDelta]:
    """``(bucket, dimension values, delta)`` of a stored counter cell."""
    total = math.inf if "ovf" in item else float(Decimal(item["s"]["N"])) if "s" in item else 0.0
    delta = CounterDelta(
        int(item["n"]["N"]),
        total,
        unsortable(item["lo"]["S"]) if "lo" in item else None,
        unsortable(item["hi"]["S"]) if "hi" in item else None,
    )
    # Missing dimensions read as "", as SQLite's padded columns do.
    return bucket_of(item["sk"]["S"]), (*_dims_of(item), "", "", ""), delta


def expires_at(retention: Retention, resolution: str, bucket: int) -> int | None:
    """The TTL of a counter cell (epoch seconds); None to keep it."""
    # The same horizon as SQLite's prune (Retention.horizon), measured from the bucket.
    horizon = retention.horizon(resolution, 0)
    return None if horizon is None else bucket - horizon


# -------------------------------------------------------------------------- gauges


def gauge_pk(name: str, generation: int) -> str:
    return f"{GAUGE_PREFIX}{name}#{generation}"


def gauge_key(name: str, generation: int, key: str) -> Item:
    """The key of a gauge reading, plus ``k`` when the key does not fit the sort key."""
    item: Item = {"pk": {"S": gauge_pk(name, generation)}, "sk": {"S": key}}
    if len(key.encode()) > MAX_SORT_KEY_BYTES:
        item["sk"] = {"S": "~" + hashlib.sha256(key.encode()).hexdigest()}
        item["k"] = {"S": key}
    return item


def gauge_reading(name: str, item: Mapping[str, Any]) -> GaugeReading:
    """A stored gauge reading of gauge ``name``."""
    return GaugeReading(
        name,
        item["k"]["S"] if "k" in item else item["sk"]["S"],
        float(item["v"]["S"]),
        int(item["t"]["N"]),
        item["e"]["S"],
    )
