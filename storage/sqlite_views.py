"""The embedded view store: read models in their own SQLite file next to the event db.

``pulse.db`` keeps the events, ``pulse.views.db`` the counters, gauges and checkpoints:
two files, two write locks, so the projection worker never waits for ingest's lock and
ingest never waits for the worker's.

Every write is one transaction that also moves the checkpoint (``apply``) or records
the definitions version (``rebuild``), so a worker killed at any point leaves the views
exactly as of its last committed batch, and restarting from the stored checkpoint gives
the same result as never having stopped. WAL with ``synchronous=NORMAL``: a crash of the
process loses nothing committed; a power loss may lose the last batches together with
their checkpoint, which the worker then projects again.

Change markers (``ViewStore.change_markers``, what live subscriptions poll): one row per
marker key, incremented once per distinct key in the same transaction as the batch, the
rebuild or the prune, so a marker is never ahead of or behind its data. A power loss
rolls markers back with their data; the watchers reading them restart with the machine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from domain.errors import StoreUnavailable
from domain.ports import (
    Checkpoint,
    CounterCell,
    GaugeReading,
    ViewChanges,
    advanced,
    batch_applies,
    expect_position,
    marker_keys,
    metric_marker,
    rebuild_markers,
    rebuilt,
)
from storage.sqlite import ThreadConnections, connect, write_transaction
from storage.sqlite_counter_writes import upsert_counters

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    metric     TEXT    NOT NULL,
    resolution TEXT    NOT NULL,
    bucket     INTEGER NOT NULL,
    d1         TEXT    NOT NULL DEFAULT '',
    d2         TEXT    NOT NULL DEFAULT '',
    d3         TEXT    NOT NULL DEFAULT '',
    count      INTEGER NOT NULL,
    total      REAL    NOT NULL,
    low        REAL,
    high       REAL,
    PRIMARY KEY (metric, resolution, bucket, d1, d2, d3)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gauges (
    name        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       REAL    NOT NULL,
    occurred_at INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,
    PRIMARY KEY (name, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_types (
    type   TEXT    PRIMARY KEY,
    events INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    projection          TEXT    NOT NULL,
    partition           TEXT    NOT NULL,
    position            INTEGER NOT NULL,
    definitions_version INTEGER NOT NULL,
    watermark           INTEGER,
    updated_at          INTEGER,
    events_total        INTEGER NOT NULL,
    events_per_second   REAL    NOT NULL,
    PRIMARY KEY (projection, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS change_markers (
    key     TEXT    PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID;
"""

_UPSERT_GAUGE = """
INSERT INTO gauges (name, key, value, occurred_at, event_id) VALUES (?, ?, ?, ?, ?)
ON CONFLICT DO UPDATE SET value = excluded.value, occurred_at = excluded.occurred_at, event_id = excluded.event_id
WHERE (excluded.occurred_at, excluded.event_id) > (gauges.occurred_at, gauges.event_id)
"""

_UPSERT_TYPE = """
INSERT INTO event_types (type, events) VALUES (?, ?)
ON CONFLICT DO UPDATE SET events = events + excluded.events
"""

# One row per marker key, bumped in the transaction that changes the key's data.
_BUMP_MARKER = """
INSERT INTO change_markers (key, version) VALUES (?, 1)
ON CONFLICT DO UPDATE SET version = version + 1
"""

_CHECKPOINT_COLUMNS = (
    "projection, partition, position, definitions_version, watermark, updated_at, events_total, events_per_second"
)

#: The columns of a checkpoint row, in ``Checkpoint``'s order (for readers of another file).
CHECKPOINT_COLUMNS = _CHECKPOINT_COLUMNS


def views_path(db: str) -> str:
    """Where the read models of the event db ``db`` live: ``<db stem>.views.db`` beside it."""
    if db == ":memory:":
        raise ValueError("the embedded view store needs a file: give --db a path, not :memory:")
    path = Path(db)
    return str(path.with_name(f"{path.stem}.views.db"))


def read_checkpoint(conn: sqlite3.Connection, projection: str, partition: str) -> Checkpoint:
    row = conn.execute(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE projection = ? AND partition = ?",
        (projection, partition),
    ).fetchone()
    return Checkpoint(*row) if row else Checkpoint(projection, partition)


def save_checkpoint(conn: sqlite3.Connection, checkpoint: Checkpoint) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO checkpoints ({_CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            checkpoint.projection,
            checkpoint.partition,
            checkpoint.position,
            checkpoint.definitions_version,
            checkpoint.watermark,
            checkpoint.updated_at,
            checkpoint.events_total,
            checkpoint.events_per_second,
        ),
    )


def bump_markers(conn: sqlite3.Connection, keys: set[str]) -> None:
    """Move the change markers of ``keys``; inside the caller's write transaction."""
    conn.executemany(_BUMP_MARKER, ((key,) for key in sorted(keys)))


class SqliteViewStore:
    """``ViewStore`` on its own SQLite file; one connection per thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._connections = ThreadConnections(self._open)
        self._conn().executescript(SCHEMA)

    @classmethod
    def beside(cls, db: str) -> SqliteViewStore:
        """The view store of the event db at ``db``."""
        return cls(views_path(db))

    def connection(self) -> sqlite3.Connection:
        """This thread's connection to the views file (other read models share the file)."""
        return self._conn()

    def _conn(self) -> sqlite3.Connection:
        return self._connections.get()

    def _open(self) -> sqlite3.Connection:
        conn = connect(self.path)
        # Views can be recomputed from the log: a power loss may drop the last batches
        # and their checkpoint together, never one without the other.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    # --- Checkpoints -------------------------------------------------------------------

    def checkpoint(self, projection: str, partition: str = "") -> Checkpoint:
        return read_checkpoint(self._conn(), projection, partition)

    def checkpoints(self) -> list[Checkpoint]:
        rows = self._conn().execute(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY projection, partition")
        return [Checkpoint(*row) for row in rows]

    # --- Writes ------------------------------------------------------------------------

    @staticmethod
    def _write(conn: sqlite3.Connection, changes: ViewChanges) -> None:
        if changes.counters:
            upsert_counters(conn, changes.counters)
        if changes.gauges:
            conn.executemany(
                _UPSERT_GAUGE,
                ((name, key, *reading) for (name, key), reading in changes.gauges.items()),
            )
        if changes.event_types:
            conn.executemany(_UPSERT_TYPE, changes.event_types.items())

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
        conn = self._conn()
        try:
            with write_transaction(conn):
                current = read_checkpoint(conn, projection, partition)
                if not batch_applies(current, after, upto, definitions_version):
                    return False
                self._write(conn, changes)
                bump_markers(conn, marker_keys(changes))
                save_checkpoint(conn, advanced(current, upto, changes, current.definitions_version, events_per_second))
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite view store {self.path}: {exc}") from exc
        return True

    @contextmanager
    def rebuild(
        self,
        projection: str,
        partition: str,
        at_position: int,
        definitions_version: int,
        metrics: Sequence[str],
        gauges: Sequence[str],
    ) -> Iterator[Callable[[ViewChanges], None]]:
        conn = self._conn()
        # One write transaction for the whole rebuild: the checkpoint cannot move meanwhile,
        # and readers see the old counters until the new ones are complete.
        with write_transaction(conn):
            current = read_checkpoint(conn, projection, partition)
            expect_position(current, at_position)
            conn.executemany("DELETE FROM counters WHERE metric = ?", [(name,) for name in metrics])
            conn.executemany("DELETE FROM gauges WHERE name = ?", [(name,) for name in gauges])
            touched = rebuild_markers(metrics, gauges)

            def add(changes: ViewChanges) -> None:
                self._write(conn, changes)
                touched.update(marker_keys(changes))

            yield add
            bump_markers(conn, touched)
            save_checkpoint(conn, rebuilt(current, definitions_version))

    def prune(self, resolution: str, before: int) -> int:
        conn = self._conn()
        deleted = 0
        with write_transaction(conn):
            # Walk the distinct metrics by primary-key seeks, then delete by key prefix:
            # no scan of the whole table.
            metric = conn.execute("SELECT metric FROM counters ORDER BY metric LIMIT 1").fetchone()
            pruned: set[str] = set()
            while metric is not None:
                gone = conn.execute(
                    "DELETE FROM counters WHERE metric = ? AND resolution = ? AND bucket < ?",
                    (metric[0], resolution, before),
                ).rowcount
                if gone:
                    deleted += gone
                    pruned.add(metric_marker(metric[0]))
                metric = conn.execute(
                    "SELECT metric FROM counters WHERE metric > ? ORDER BY metric LIMIT 1", metric
                ).fetchone()
            bump_markers(conn, pruned)
        return deleted

    def reset_if_timezone_changed(self, timezone: str) -> bool:
        """Day buckets depend on the day time zone: when it differs from the one the views
        were computed in, drop every read model and checkpoint so they are projected again.
        Returns True when it did."""
        conn = self._conn()
        with write_transaction(conn):
            row = conn.execute("SELECT value FROM meta WHERE key = 'timezone'").fetchone()
            changed = row is not None and row[0] != timezone
            if changed:
                for table in ("counters", "gauges", "event_types", "checkpoints"):
                    conn.execute(f"DELETE FROM {table}")
                # Markers are kept and moved, never deleted: a version must only ever grow.
                conn.execute("UPDATE change_markers SET version = version + 1")
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('timezone', ?)", (timezone,))
        return changed

    # --- Reads -------------------------------------------------------------------------

    def read_counters(
        self,
        metric: str,
        resolution: str,
        start: int,
        end: int,
        where: Mapping[int, str] | None = None,
        group_by: int | None = None,
    ) -> list[CounterCell]:
        conditions = ["metric = ?", "resolution = ?", "bucket >= ?", "bucket < ?"]
        params: list[object] = [metric, resolution, start, end]
        for index, value in sorted((where or {}).items()):
            conditions.append(f"d{_column(index)} = ?")
            params.append(value)
        group = f"d{_column(group_by)}" if group_by is not None else "NULL"
        grouping = "bucket" if group_by is None else f"bucket, {group}"
        rows = self._conn().execute(
            f"SELECT bucket, {group}, SUM(count), SUM(total), MIN(low), MAX(high) FROM counters"
            f" WHERE {' AND '.join(conditions)} GROUP BY {grouping} ORDER BY {grouping}",
            params,
        )
        return [CounterCell(*row) for row in rows]

    def read_gauges(self, name: str, keys: Sequence[str] | None = None) -> list[GaugeReading]:
        conn = self._conn()
        if keys is None:
            rows = conn.execute(
                "SELECT name, key, value, occurred_at, event_id FROM gauges WHERE name = ? ORDER BY key", (name,)
            ).fetchall()
        else:
            wanted = sorted(set(keys))
            marks = ", ".join("?" * len(wanted))
            rows = conn.execute(
                f"SELECT name, key, value, occurred_at, event_id FROM gauges WHERE name = ? AND key IN ({marks})"
                " ORDER BY key",
                (name, *wanted),
            ).fetchall()
        return [GaugeReading(*row) for row in rows]

    def event_types(self) -> dict[str, int]:
        return dict(self._conn().execute("SELECT type, events FROM event_types ORDER BY type"))

    def change_markers(self) -> dict[str, int]:
        return dict(self._conn().execute("SELECT key, version FROM change_markers"))

    def close(self) -> None:
        self._connections.close()


def _column(index: int) -> int:
    # Dimension indexes come from a metric definition (at most 3); never from a client.
    if index not in (0, 1, 2):
        raise ValueError(f"dimension index must be 0, 1 or 2, got {index!r}")
    return index + 1
