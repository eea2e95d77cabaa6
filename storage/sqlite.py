"""The embedded event store: one SQLite file in WAL mode.

Writers serialise on SQLite's write lock (``BEGIN IMMEDIATE``), so positions become
visible in the order they were assigned and a tailing reader never skips one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from domain.errors import ConcurrencyError, EventTooLarge, StoreUnavailable
from domain.events import FACTS_STREAM, Event, FactPage, IngestResult, RecordedEvent, utc_now
from storage.codec import dumps, from_micros, loads, to_micros

# Kept equal to DynamoDB's item limit so an event accepted here also fits in the cloud.
MAX_EVENT_BYTES = 400 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    stream_id   TEXT    NOT NULL,
    version     INTEGER,
    type        TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    source      TEXT,
    properties  TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE INDEX IF NOT EXISTS events_by_type_time ON events (type, occurred_at);
"""

_COLUMNS = "position, id, stream_id, version, type, occurred_at, source, properties, received_at"


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection with Pulse's pragmas; autocommit, transactions are explicit."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: an accepted batch survives power loss, which is what 202 promises.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _rows_to_events(rows: list[tuple]) -> list[RecordedEvent]:
    if not rows:
        return []
    # One JSON parse per page: json.loads' per-call overhead is most of the cost of
    # decoding a small properties object, and reading is the projections' hot path.
    all_properties = loads("[" + ",".join(row[7] for row in rows) + "]")
    return [
        RecordedEvent(
            id=event_id,
            type=type_,
            occurred_at=from_micros(occurred),
            properties=properties,
            source=source,
            stream_id=stream_id,
            version=version,
            position=position,
            received_at=from_micros(received),
        )
        for (position, event_id, stream_id, version, type_, occurred, source, _, received), properties in zip(
            rows, all_properties, strict=True
        )
    ]


class SqliteEventStore:
    """``EventStore`` on a SQLite file; one connection per thread."""

    max_event_bytes = MAX_EVENT_BYTES

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._conn().executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _rows(self, stream_id: str, events: Sequence[Event], first_version: int | None):
        received = to_micros(utc_now())
        rows = []
        for index, event in enumerate(events):
            props = dumps(dict(event.properties))
            size = len(props.encode()) + len(event.id) + len(event.type) + len(event.source or "")
            if size > MAX_EVENT_BYTES:
                raise EventTooLarge(event.id, size, MAX_EVENT_BYTES, index=index)
            version = None if first_version is None else first_version + index
            rows.append(
                (
                    event.id,
                    stream_id,
                    version,
                    event.type,
                    to_micros(event.occurred_at),
                    event.source,
                    props,
                    received,
                )
            )
        return rows

    def ingest(self, events: Sequence[Event]) -> IngestResult:
        rows = self._rows(FACTS_STREAM, events, None)
        try:
            conn = self._conn()
            with write_transaction(conn):
                before = conn.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0]
                cursor = conn.executemany(
                    "INSERT INTO events (id, stream_id, version, type, occurred_at, source,"
                    " properties, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO NOTHING",
                    rows,
                )
                inserted = cursor.rowcount
                if inserted == len(rows):
                    return IngestResult(tuple(r[0] for r in rows), (False,) * len(rows))
                # Slow path: some ids were stored already or repeat within the batch.
                new_ids = {r[0] for r in conn.execute("SELECT id FROM events WHERE position > ?", (before,))}
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        flags = []
        for event_id, *_ in rows:
            flags.append(event_id not in new_ids)
            new_ids.discard(event_id)  # a second occurrence in the batch is a duplicate
        return IngestResult(tuple(r[0] for r in rows), tuple(flags))

    def append(self, stream_id: str, events: Sequence[Event], expected_version: int) -> int:
        if stream_id == FACTS_STREAM:
            raise ValueError(f"{FACTS_STREAM} is written with ingest(), not append()")
        rows = self._rows(stream_id, events, expected_version + 1)
        try:
            conn = self._conn()
            with write_transaction(conn):
                current = conn.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?",
                    (stream_id,),
                ).fetchone()[0]
                if current != expected_version:
                    raise ConcurrencyError(stream_id, expected_version, current)
                conn.executemany(
                    "INSERT INTO events (id, stream_id, version, type, occurred_at, source,"
                    " properties, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.IntegrityError as exc:
            # Only an event id reused from elsewhere can collide once the version matched.
            raise ConcurrencyError(stream_id, expected_version, None) from exc
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        return expected_version + len(rows)

    def read_stream(self, stream_id: str, after_version: int | None = None) -> list[RecordedEvent]:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM events WHERE stream_id = ? AND version > ? ORDER BY version",
            (stream_id, after_version or 0),
        )
        return _rows_to_events(rows)

    def read_facts(self, cursor: str | None = None, limit: int = 1000) -> FactPage:
        after = int(cursor) if cursor else 0
        rows = self._query(
            # "+stream_id" keeps the planner on the rowid range: the (stream_id, version)
            # index would otherwise scan and sort every fact on each page.
            f"SELECT {_COLUMNS} FROM events WHERE position > ? AND +stream_id = ? ORDER BY position LIMIT ?",
            (after, FACTS_STREAM, limit),
        )
        events = tuple(_rows_to_events(rows))
        return FactPage(events, str(events[-1].position) if events else cursor)

    def last_position(self) -> int:
        """The newest position written; what a tailing worker measures its lag against."""
        return self._query("SELECT COALESCE(MAX(position), 0) FROM events", ())[0][0]

    def ping(self) -> None:
        self._query("SELECT 1 FROM events LIMIT 1", ())

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: sqlite3.Error) -> StoreUnavailable:
        return StoreUnavailable(f"SQLite store {self.path}: {exc}")

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
