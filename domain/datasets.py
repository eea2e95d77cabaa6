"""Static datasets: uploaded tables (CSV or JSON) that dashboard widgets can show.

Parsing here is pure: ``parse_csv`` / ``parse_json`` turn an upload into a ``Table`` of typed
columns (``NUMBER``, ``BOOLEAN``, ``DATETIME``, ``TEXT``; inferred per column, overridable),
or refuse it whole: ``ValidationError`` (HTTP 422) naming the row and column of each bad
value, ``DatasetTooLarge`` (413) naming the limit and where it was passed. Nothing of a
refused upload is stored.

A dynamic dataset is a saved query instead (``dataset_defined``): a series, breakdown, gauge
or recent-events query, answered afresh whenever it is read.

A dataset's schema lives in the event store, one stream per dataset (``dataset:<name>``:
``dataset_uploaded`` with the columns, row count, size and the blob holding the rows, and
``dataset_deleted``); its rows are a blob (a local folder, or S3), written before the event
that names it, so an event never points at a missing blob.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.errors import FieldError, PulseError, ValidationError
from domain.events import RecordedEvent

NUMBER, BOOLEAN, DATETIME, TEXT = "NUMBER", "BOOLEAN", "DATETIME", "TEXT"
TYPES = (NUMBER, BOOLEAN, DATETIME, TEXT)
STREAM_PREFIX = "dataset:"
UPLOADED = "dataset_uploaded"
#: A dynamic dataset: a saved query (``domain.widgets.Source`` properties) instead of rows.
DEFINED = "dataset_defined"
DELETED = "dataset_deleted"
MAX_BYTES = 5 * 2**20
MAX_ROWS = 50_000
MAX_COLUMNS = 100
MAX_CELL = 10_000
#: Errors reported at most, so a bad file does not produce a megabyte of messages.
MAX_ERRORS = 20
NAME = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?")
_TRUE, _FALSE = {"true", "yes"}, {"false", "no"}

Cell = float | bool | str | None


class DatasetTooLarge(PulseError):
    """An upload past a size limit (HTTP 413); nothing was stored."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__(errors[0].message)


class DatasetConflict(PulseError):
    """The dataset exists already, or is in use and cannot be deleted (HTTP 409)."""

    def __init__(self, message: str, widgets: Sequence[str] = ()) -> None:
        self.widgets = list(widgets)
        super().__init__(message)


def stream_of(name: str) -> str:
    return STREAM_PREFIX + name


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValidationError(
            [
                FieldError(
                    "name",
                    f"{str(name)[:80]!r} is not a dataset name: 1 to 64 lowercase letters, digits, _ and -,"
                    " starting and ending with a letter or digit",
                )
            ]
        )
    return name


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class Table:
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]

    def as_json(self) -> bytes:
        return json.dumps(
            {"columns": [{"name": c.name, "type": c.type} for c in self.columns], "rows": [list(r) for r in self.rows]},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Table:
        parsed = json.loads(data)
        return cls(
            tuple(Column(c["name"], c["type"]) for c in parsed["columns"]), tuple(tuple(r) for r in parsed["rows"])
        )


def _number(text: str) -> float | None:
    try:
        value = float(text.replace(",", "")) if text.strip() else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _datetime(text: str) -> str | None:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).isoformat()
    except ValueError:
        return None


def _convert(value: Any, kind: str) -> tuple[Cell, bool]:
    """The value as ``kind``, and whether it converted."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, True
    if kind == TEXT:
        return value if isinstance(value, str) else json.dumps(value), True
    if kind == NUMBER:
        if isinstance(value, bool):
            return None, False
        if isinstance(value, int | float):
            return (float(value), True) if math.isfinite(value) else (None, False)
        number = _number(value) if isinstance(value, str) else None
        return number, number is not None
    if kind == BOOLEAN:
        if isinstance(value, bool):
            return value, True
        lowered = str(value).strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE, True
        return None, False
    moment = _datetime(value) if isinstance(value, str) else None
    return moment, moment is not None


def _infer(values: list[Any]) -> str:
    present = [v for v in values if v is not None and not (isinstance(v, str) and not v.strip())]
    for kind in (NUMBER, BOOLEAN, DATETIME):
        if present and all(_convert(v, kind)[1] for v in present):
            return kind
    return TEXT


def _check_text(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return len(value) <= MAX_CELL


def build_table(names: Sequence[str], raw_rows: Sequence[Sequence[Any]], types: Mapping[str, str] | None) -> Table:
    """Typed columns from raw cells (row i has one cell per name), or refuse the whole upload."""
    errors: list[FieldError] = []
    if not names:
        raise ValidationError([FieldError("data", "no columns: the first CSV line (or the JSON objects) names them")])
    if len(names) > MAX_COLUMNS:
        raise DatasetTooLarge(
            [FieldError(f"columns.{names[MAX_COLUMNS]}", f"at most {MAX_COLUMNS} columns; it has {len(names)}")]
        )
    if len(raw_rows) > MAX_ROWS:
        raise DatasetTooLarge(
            [FieldError("rows", f"at most {MAX_ROWS} rows; row {MAX_ROWS + 1} is past the limit", index=MAX_ROWS)]
        )
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip() or len(name) > 128 or not _check_text(name):
            errors.append(FieldError(f"columns[{i}]", "a column needs a name of 1 to 128 characters"))
        elif name in seen:
            errors.append(FieldError(f"columns[{i}]", f"column {name!r} appears twice"))
        seen.add(name)
    for column, kind in (types or {}).items():
        if column not in seen:
            errors.append(FieldError(f"types.{column}", f"no column {column!r} (columns: {', '.join(names)})"))
        elif kind not in TYPES:
            errors.append(FieldError(f"types.{column}", f"{str(kind)[:40]!r} is not one of {', '.join(TYPES)}"))
    if errors:
        raise ValidationError(errors)
    chosen = []
    for j, name in enumerate(names):
        kind = (types or {}).get(name) or _infer([row[j] for row in raw_rows])
        chosen.append(Column(name, kind))
    rows: list[tuple[Cell, ...]] = []
    for i, raw in enumerate(raw_rows):
        cells: list[Cell] = []
        for column, value in zip(chosen, raw, strict=True):
            converted, ok = _convert(value, column.type)
            if (not ok or not _check_text(value)) and len(errors) < MAX_ERRORS:
                where = f"row {i + 1}, column {column.name!r}"
                message = f"{where}: {str(value)[:40]!r} is not a {column.type.lower()}"
                if not _check_text(value):
                    message = f"{where}: not valid text of at most {MAX_CELL} characters"
                errors.append(FieldError(f"rows[{i + 1}].{column.name}", message, index=i + 1))
            cells.append(converted)
        rows.append(tuple(cells))
    if errors:
        raise ValidationError(errors)
    return Table(tuple(chosen), tuple(rows))


def parse_csv(data: bytes, types: Mapping[str, str] | None = None) -> Table:
    if len(data) > MAX_BYTES:
        raise DatasetTooLarge([FieldError("data", f"the upload is {len(data)} bytes; at most {MAX_BYTES}")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError([FieldError("data", f"CSV must be UTF-8: byte {exc.start} is not")]) from exc
    try:
        lines = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ValidationError([FieldError("data", f"not CSV: {exc}")]) from exc
    lines = [line for line in lines if line]  # blank lines
    if not lines:
        raise ValidationError([FieldError("data", "the CSV is empty: a first line names the columns")])
    names, body = lines[0], lines[1:]
    for i, row in enumerate(body):
        if len(row) != len(names):
            raise ValidationError(
                [FieldError(f"rows[{i + 1}]", f"row {i + 1} has {len(row)} cells; the header has {len(names)}", i + 1)]
            )
    return build_table(names, body, types)


def parse_json(rows: Any, types: Mapping[str, str] | None = None) -> Table:
    """Rows as a list of objects with scalar values; columns in order of first appearance."""
    if not isinstance(rows, list):
        raise ValidationError([FieldError("data", "must be a list of objects (one per row)")])
    names: list[str] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValidationError([FieldError(f"rows[{i + 1}]", f"row {i + 1} is not an object", i + 1)])
        for key, value in row.items():
            if key not in names:
                names.append(key)
            if isinstance(value, dict | list):
                message = f"row {i + 1}, column {key!r}: a cell is a number, text, true/false or null"
                raise ValidationError([FieldError(f"rows[{i + 1}].{key}", message, i + 1)])
    return build_table(names, [[row.get(name) for name in names] for row in rows], types)


@dataclass
class Dataset:
    """The fold of one dataset's stream."""

    name: str
    columns: tuple[Column, ...] = ()
    rows: int = 0
    bytes: int = 0
    blob: str | None = None
    #: A dynamic dataset's query, as stored (``domain.widgets.source_from`` reads it).
    query: Mapping[str, Any] | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None
    deleted: bool = True
    version: int = 0
    history: list[str] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        return not self.deleted and (self.blob is not None or self.query is not None)

    def apply(self, events: Sequence[RecordedEvent]) -> None:
        for recorded in events:
            props = recorded.properties
            by = (props.get("by") or {}).get("name")
            if recorded.type == UPLOADED:
                self.columns = tuple(Column(c["name"], c["type"]) for c in props["columns"])
                self.rows, self.bytes, self.blob = props["rows"], props["bytes"], props["blob"]
                self.query, self.deleted = None, False
            elif recorded.type == DEFINED:
                self.columns, self.rows, self.bytes, self.blob = (), 0, 0, None
                self.query, self.deleted = dict(props["query"]), False
            elif recorded.type == DELETED:
                self.deleted = True
            self.updated_at, self.updated_by = recorded.occurred_at, by
            self.history.append(f"{recorded.type} by {by}")
            self.version = recorded.version or self.version
