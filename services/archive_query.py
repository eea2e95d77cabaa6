"""DuckDB over the archive: `pulse archive query` and `pulse archive export`.

The view ``events`` reads the archive's live files (``projections.archive.live_files``:
never a file a compacted one covers) with ``hive_partitioning`` (so ``type``, ``date``
and ``hour`` filter by folder) and ``union_by_name`` (files written before a typed
column was added have it null). A local folder is read in place; any other blob store
(S3) is first copied to a temporary folder with boto3. DuckDB is imported here only:
the worker and Lambda never need it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from domain.blobs import BlobStore
from projections.archive import join, live_files
from services.archive import archive_files
from storage.blob_local import LocalBlobStore


class EmptyArchive(Exception):
    """No archive file matches."""


@contextmanager
def local_files(blobs: BlobStore, prefix: str = "", under: str = "") -> Iterator[list[str]]:
    """Paths of the live archive files under ``prefix``/``under`` on this machine."""
    keys = live_files(archive_files(blobs, prefix, under))
    if isinstance(blobs, LocalBlobStore):
        yield [str(blobs.root / key) for key in keys]
        return
    with tempfile.TemporaryDirectory(prefix="pulse-archive-") as folder:
        paths = []
        for key in keys:
            path = Path(folder, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blobs.get(key))
            paths.append(str(path))
        yield paths


@contextmanager
def connect(blobs: BlobStore, prefix: str = "", under: str = "") -> Iterator[Any]:
    """A DuckDB connection with the view ``events`` over the archive."""
    import duckdb

    with local_files(blobs, prefix, under) as paths:
        if not paths:
            raise EmptyArchive(f"no archive files in {join(blobs.location, join(prefix, under) or '.')}")
        conn = duckdb.connect()
        try:
            listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
            conn.execute(
                f"CREATE VIEW events AS SELECT * FROM read_parquet([{listed}],"
                " hive_partitioning = true, union_by_name = true)"
            )
            yield conn
        finally:
            conn.close()


def query(blobs: BlobStore, sql: str, prefix: str = "") -> tuple[list[str], list[tuple]]:
    """``(column names, rows)`` of ``sql`` over the view ``events``."""
    with connect(blobs, prefix) as conn:
        result = conn.execute(sql)
        columns = [d[0] for d in result.description or ()]
        return columns, result.fetchall()


def export(
    blobs: BlobStore,
    output: str,
    event_type: str,
    start: str | None = None,
    end: str | None = None,
    fmt: str = "csv",
    prefix: str = "",
) -> int:
    """Facts of ``event_type`` with ``start <= occurred_at < end`` (ISO dates or times,
    UTC) into ``output`` as CSV or Parquet, by ``occurred_at``; returns how many."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, got {fmt!r}")
    where, params = ["type = ?"], [event_type]
    if start:
        where.append("occurred_at >= CAST(? AS TIMESTAMPTZ)")
        params.append(start)
    if end:
        where.append("occurred_at < CAST(? AS TIMESTAMPTZ)")
        params.append(end)
    select = (
        "SELECT * EXCLUDE (date, hour) FROM events WHERE " + " AND ".join(where) + " ORDER BY occurred_at, id"
    )
    options = "FORMAT csv, HEADER true" if fmt == "csv" else "FORMAT parquet, COMPRESSION zstd"
    with connect(blobs, prefix, f"type={event_type}/") as conn:
        conn.execute("SET TimeZone = 'UTC'")
        count = conn.execute(f"SELECT count(*) FROM ({select})", params).fetchone()[0]
        target = output.replace("'", "''")
        conn.execute(f"COPY ({select}) TO '{target}' ({options})", params)
    return int(count)
