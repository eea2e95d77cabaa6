"""The replay ledger on the embedded store: one row per projection in the views file.

A row is written by ``replayProjection`` (REQUESTED), claimed by the process that runs
the replay (REPLAYING, with an owner and a lease renewed at every page), deleted when
the replay switched (the projection is LIVE again) or kept as FAILED with the error.
Each change is one short write transaction, so two processes racing for a replay find
out which one won from the row itself.
"""

from __future__ import annotations

import sqlite3

from domain.errors import StoreUnavailable
from domain.ports import PROJECTIONS_MARKER
from domain.replay import FAILED, REPLAYING, REQUESTED, ReplayLost, ReplayRunning, ReplayStatus, claim_of
from storage.sqlite import write_transaction
from storage.sqlite_views import SqliteViewStore, bump_markers

SCHEMA = """
CREATE TABLE IF NOT EXISTS replays (
    projection        TEXT    PRIMARY KEY,
    state             TEXT    NOT NULL,
    owner             TEXT,
    lease_until       REAL    NOT NULL DEFAULT 0,
    done              INTEGER NOT NULL DEFAULT 0,
    total             INTEGER NOT NULL DEFAULT 0,
    events_per_second REAL    NOT NULL DEFAULT 0,
    requested_at      REAL,
    started_at        REAL,
    updated_at        REAL,
    error             TEXT
) WITHOUT ROWID;
"""

#: Subscribers of ``projectionStatus`` see a replay start, switch or fail at once.
_STATUS = {PROJECTIONS_MARKER}

_COLUMNS = (
    "projection, state, owner, lease_until, done, total, events_per_second, requested_at, started_at, updated_at, error"
)


def _read(conn: sqlite3.Connection, projection: str) -> ReplayStatus | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM replays WHERE projection = ?", (projection,)).fetchone()
    return None if row is None else ReplayStatus(*row)


def _save(conn: sqlite3.Connection, status: ReplayStatus) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO replays ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            status.projection,
            status.state,
            status.owner,
            status.lease_until,
            status.done,
            status.total,
            status.events_per_second,
            status.requested_at,
            status.started_at,
            status.updated_at,
            status.error,
        ),
    )


class SqliteReplayLedger:
    """``ReplayLedger`` in the views file of a ``SqliteViewStore``."""

    def __init__(self, views: SqliteViewStore) -> None:
        self.views = views
        views.connection().executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return self.views.connection()

    def replays(self) -> dict[str, ReplayStatus]:
        rows = self._conn().execute(f"SELECT {_COLUMNS} FROM replays ORDER BY projection")
        return {row[0]: ReplayStatus(*row) for row in rows}

    def request(self, projection: str, now: float) -> ReplayStatus:
        conn = self._conn()
        try:
            with write_transaction(conn):
                current = _read(conn, projection)
                if current is not None and current.held(now):
                    raise ReplayRunning(current)
                status = ReplayStatus(projection, REQUESTED, requested_at=now, updated_at=now)
                _save(conn, status)
                bump_markers(conn, _STATUS)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite view store {self.views.path}: {exc}") from exc
        return status

    def claim(self, projection: str, owner: str, now: float, lease_seconds: float, total: int) -> ReplayStatus:
        conn = self._conn()
        with write_transaction(conn):
            status = claim_of(_read(conn, projection), projection, owner, now, lease_seconds, total)
            _save(conn, status)
            bump_markers(conn, _STATUS)
        return status

    def renew(
        self, projection: str, owner: str, now: float, lease_seconds: float, done: int, total: int, rate: float
    ) -> None:
        conn = self._conn()
        with write_transaction(conn):
            moved = conn.execute(
                "UPDATE replays SET lease_until = ?, done = ?, total = ?, events_per_second = ?, updated_at = ?"
                " WHERE projection = ? AND owner = ? AND state = ?",
                (now + lease_seconds, done, total, rate, now, projection, owner, REPLAYING),
            ).rowcount
        if not moved:
            raise ReplayLost(f"the replay of {projection} was taken over by another process")

    def finish(self, projection: str, owner: str) -> None:
        conn = self._conn()
        with write_transaction(conn):
            conn.execute("DELETE FROM replays WHERE projection = ? AND owner = ?", (projection, owner))
            bump_markers(conn, _STATUS)

    def fail(self, projection: str, owner: str, error: str, now: float) -> None:
        conn = self._conn()
        with write_transaction(conn):
            conn.execute(
                "UPDATE replays SET state = ?, error = ?, lease_until = 0, updated_at = ?"
                " WHERE projection = ? AND owner = ?",
                (FAILED, error, now, projection, owner),
            )
            bump_markers(conn, _STATUS)
