"""Parked events on the embedded store: a table in the views db, beside the checkpoints
of the projections that parked them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from domain.errors import StoreUnavailable
from domain.parked import ParkedEvent, merged
from storage.parked_codec import encode_event, record
from storage.sqlite import write_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS parked_events (
    projection TEXT NOT NULL,
    event_id TEXT NOT NULL,
    partition TEXT NOT NULL,
    position INTEGER NOT NULL,
    event TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_failure REAL NOT NULL,
    last_failure REAL NOT NULL,
    PRIMARY KEY (projection, event_id)
);
"""

_COLUMNS = "projection, partition, event, error, attempts, first_failure, last_failure"


class SqliteParkedEvents:
    """``ParkedEvents`` in the views db, through the view store's per-thread connections."""

    def __init__(self, connection: Callable[[], sqlite3.Connection], path: str = "views db") -> None:
        self._connection = connection
        self.path = path
        self._connection().executescript(SCHEMA)

    def _get(self, conn: sqlite3.Connection, projection: str, event_id: str) -> ParkedEvent | None:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM parked_events WHERE projection = ? AND event_id = ?", (projection, event_id)
        ).fetchone()
        return None if row is None else record(*row)

    def park(self, parked: ParkedEvent) -> None:
        conn = self._connection()
        try:
            with write_transaction(conn):
                stored = merged(self._get(conn, parked.projection, parked.event_id), parked)
                conn.execute(
                    "INSERT OR REPLACE INTO parked_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        stored.projection,
                        stored.event_id,
                        stored.partition,
                        stored.position,
                        encode_event(stored.event),
                        stored.error,
                        stored.attempts,
                        stored.first_failure,
                        stored.last_failure,
                    ),
                )
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite parked events in {self.path}: {exc}") from exc

    def get(self, projection: str, event_id: str) -> ParkedEvent | None:
        return self._get(self._connection(), projection, event_id)

    def list(self, projection: str | None = None) -> list[ParkedEvent]:
        where, args = ("WHERE projection = ?", (projection,)) if projection is not None else ("", ())
        rows = self._connection().execute(
            f"SELECT {_COLUMNS} FROM parked_events {where} ORDER BY projection, partition, position", args
        )
        return [record(*row) for row in rows]

    def counts(self) -> dict[str, int]:
        rows = self._connection().execute("SELECT projection, COUNT(*) FROM parked_events GROUP BY projection")
        return dict(rows.fetchall())

    def drop(self, projection: str, event_id: str) -> bool:
        conn = self._connection()
        with write_transaction(conn):
            deleted = conn.execute(
                "DELETE FROM parked_events WHERE projection = ? AND event_id = ?", (projection, event_id)
            ).rowcount
        return deleted > 0
