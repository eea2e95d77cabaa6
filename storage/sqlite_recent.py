"""The recent-events feed on the embedded store: a table in the views file.

One row per (scope, fact): scope is an event type or ``*`` (every type). Each batch is one
transaction that inserts the batch's newest facts (a fact stored already is ignored),
trims every scope it touched to the newest ``keep``, bumps the scopes' change markers
and moves the projection's checkpoint.
"""

from __future__ import annotations

import sqlite3

from domain.errors import StoreUnavailable
from domain.events import FACTS_STREAM, RecordedEvent
from domain.ports import ALL_TYPES, PROJECTIONS_MARKER, RECENT_KEEP, RecentChanges, advanced, recent_marker
from storage.codec import dumps, loads
from storage.sqlite import write_transaction
from storage.sqlite_views import SqliteViewStore, bump_markers, read_checkpoint, save_checkpoint

SCHEMA = """
CREATE TABLE IF NOT EXISTS recent_events (
    scope       TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    id          TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    source      TEXT,
    properties  TEXT    NOT NULL,
    position    INTEGER,
    PRIMARY KEY (scope, occurred_at, id)
) WITHOUT ROWID;
"""

_INSERT = """
INSERT OR IGNORE INTO recent_events (scope, occurred_at, id, type, received_at, source, properties, position)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""

# Everything older than the keep-th newest row of the scope.
_TRIM = """
DELETE FROM recent_events WHERE scope = ?1 AND (occurred_at, id) < (
    SELECT occurred_at, id FROM recent_events WHERE scope = ?1
    ORDER BY occurred_at DESC, id DESC LIMIT 1 OFFSET ?2 - 1
)
"""

_COLUMNS = "id, type, occurred_at, properties, source, position, received_at"


class SqliteRecentEvents:
    """``ProjectionStore[RecentChanges]`` and ``RecentEventsReader`` in the views file."""

    def __init__(self, views: SqliteViewStore, keep: int = RECENT_KEEP) -> None:
        self.views = views
        self.keep = keep
        views.connection().executescript(SCHEMA)

    def position(self, projection: str, partition: str) -> int:
        return self.views.checkpoint(projection, partition).position

    def apply(self, projection: str, partition: str, changes: RecentChanges, after: int, upto: int) -> bool:
        conn = self.views.connection()
        try:
            with write_transaction(conn):
                current = read_checkpoint(conn, projection, partition)
                if current.position >= upto:
                    return False
                touched = {PROJECTIONS_MARKER}
                encoded: dict[str, tuple] = {}  # an event listed in two scopes is encoded once
                for scope, events in changes.scopes.items():
                    rows = []
                    for event in events:
                        found = encoded.get(event.id)
                        if found is None:
                            found = encoded[event.id] = _columns(event)
                        rows.append((scope, *found))
                    conn.executemany(_INSERT, rows)
                    conn.execute(_TRIM, (scope, self.keep))
                    touched.add(recent_marker(scope))
                bump_markers(conn, touched)
                save_checkpoint(conn, advanced(current, upto, changes))
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite view store {self.views.path}: {exc}") from exc
        return True

    def recent_events(self, event_type: str | None, limit: int) -> list[RecordedEvent]:
        rows = self.views.connection().execute(
            f"SELECT {_COLUMNS} FROM recent_events WHERE scope = ? ORDER BY occurred_at DESC, id DESC LIMIT ?",
            (event_type or ALL_TYPES, limit),
        )
        return [
            RecordedEvent.at_micros(
                id=event_id,
                type=etype,
                occurred_micros=occurred,
                properties=loads(properties),
                source=source,
                stream_id=FACTS_STREAM,
                version=None,
                position=position,
                received_micros=received,
            )
            for event_id, etype, occurred, properties, source, position, received in rows
        ]


def _columns(event: RecordedEvent) -> tuple:
    """The row of ``event`` after its scope."""
    return (
        event.occurred_micros,
        event.id,
        event.type,
        event.received_micros,
        event.source,
        event.properties_json if event.properties_json is not None else dumps(dict(event.properties)),
        event.position,
    )
