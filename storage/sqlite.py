"""The embedded event store: one SQLite file in WAL mode.

Writers serialise on SQLite's write lock (``BEGIN IMMEDIATE``), so positions become
visible in the order they were assigned and a tailing reader never skips one.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from domain.errors import ConcurrencyError, StoreUnavailable
from domain.events import (
    FACTS_STREAM,
    Event,
    FactPage,
    IngestResult,
    Payload,
    RecordedEvent,
    conflicting_ids,
    payload,
)
from storage.codec import EventColumns, dumps, event_columns, loads, loads_all

# Beside the database: ingest writers of every process take turns on it (see _writer_turn).
WRITER_LOCK_SUFFIX = "-writer.lock"

# Kept equal to DynamoDB's item limit so an event accepted here also fits in the cloud.
MAX_EVENT_BYTES = 400 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY,
    id          TEXT    NOT NULL UNIQUE,
    stream_id   TEXT    NOT NULL,
    version     INTEGER,
    type        TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    source      TEXT,
    properties  TEXT    NOT NULL,
    received_at INTEGER NOT NULL
);
-- An index by (type, occurred_at) that nothing read; files made before it was dropped lose it here.
DROP INDEX IF EXISTS events_by_type_time;
"""
# Positions are plain rowids (max + 1): the log is append-only, no row is ever deleted, so
# none is reused without AUTOINCREMENT's extra write per insert. The (stream, version)
# uniqueness covers aggregate events only: facts (version NULL, most rows) stay out of that
# index, so a fact's insert updates the id index alone. Files made before this keep their
# table (an inline UNIQUE (stream_id, version) and AUTOINCREMENT), which reads the same.
_STREAM_VERSION_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS events_by_stream_version ON events (stream_id, version)"
    " WHERE version IS NOT NULL"
)


def _create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    table = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()[0]
    if "UNIQUE (stream_id, version)" not in table:
        conn.execute(_STREAM_VERSION_INDEX)


_COLUMNS = "position, id, stream_id, version, type, occurred_at, source, properties, received_at"
_FACT_COLUMNS = "position, id, type, occurred_at, source, properties, received_at"


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection with Pulse's pragmas; autocommit, transactions are explicit."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: an accepted batch survives power loss, which is what 202 promises.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class ThreadConnections:
    """One connection per thread to one SQLite file, opened by ``opener`` on first use;
    ``close`` closes every thread's."""

    def __init__(self, opener: Callable[[], sqlite3.Connection]) -> None:
        self._open = opener
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _rows_to_facts(rows: list[tuple]) -> list[RecordedEvent]:
    """Rows of ``_FACT_COLUMNS`` as facts: the lean read path of catch-up and replay. Times
    stay integers and the stored JSON text rides along (see ``RecordedEvent``); the stream
    and version, the same for every fact, are not read; one JSON parse per page."""
    if not rows:
        return []
    all_properties = loads_all([row[5] for row in rows])
    new, cls = tuple.__new__, RecordedEvent
    return [
        new(cls, (event_id, type_, occurred, properties, source, FACTS_STREAM, None, position, received, text))
        for (position, event_id, type_, occurred, source, text, received), properties in zip(
            rows, all_properties, strict=True
        )
    ]


def _rows_to_events(rows: list[tuple]) -> list[RecordedEvent]:
    if not rows:
        return []
    # One JSON parse per page: json.loads' per-call overhead is most of the cost of
    # decoding a small properties object, and reading is the projections' hot path.
    all_properties = loads_all([row[7] for row in rows])
    # The lean path: times stay integers and the stored JSON text rides along (see
    # RecordedEvent); tuple.__new__ is the cheapest way to build the row.
    new, cls = tuple.__new__, RecordedEvent
    return [
        new(cls, (event_id, type_, occurred, properties, source, stream_id, version, position, received, text))
        for (position, event_id, stream_id, version, type_, occurred, source, text, received), properties in zip(
            rows, all_properties, strict=True
        )
    ]


class _PendingIngest:
    """One ingest call's rows waiting for a group commit, then its outcome."""

    __slots__ = ("done", "error", "result", "rows")

    def __init__(self, rows: list[tuple]) -> None:
        self.rows = rows
        self.done = False
        self.result: IngestResult | None = None
        self.error: BaseException | None = None


def _insert_facts(conn: sqlite3.Connection, rows: list[tuple]) -> IngestResult:
    """Insert one batch inside the caller's transaction; repeated ids are duplicates."""
    before = conn.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0]
    inserted = conn.executemany(
        "INSERT INTO events (id, stream_id, version, type, occurred_at, source,"
        " properties, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO NOTHING",
        rows,
    ).rowcount
    ids = tuple(row[0] for row in rows)
    if inserted == len(rows):
        return IngestResult(ids, (False,) * len(rows))
    # Slow path: some ids were stored already or repeat within the batch.
    new_ids = {row[0] for row in conn.execute("SELECT id FROM events WHERE position > ?", (before,))}
    flags = []
    for event_id in ids:
        flags.append(event_id not in new_ids)
        new_ids.discard(event_id)  # a second occurrence in the batch is a duplicate
    repeated = sorted({event_id for event_id, flag in zip(ids, flags, strict=True) if flag})
    stored = {
        event_id: payload(type_, occurred, source, loads(properties))
        for event_id, type_, occurred, source, properties in conn.execute(
            "SELECT id, type, occurred_at, source, properties FROM events WHERE id IN (SELECT value FROM json_each(?))",
            (dumps(repeated),),
        )
    }

    def sent(index: int) -> Payload:
        _, _, _, type_, occurred, source, properties, _ = rows[index]
        return payload(type_, occurred, source, loads(properties))

    return IngestResult(ids, tuple(flags), conflicting_ids(ids, flags, sent, stored))


class SqliteEventStore:
    """``EventStore`` on a SQLite file; one connection per thread."""

    max_event_bytes = MAX_EVENT_BYTES

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._connections = ThreadConnections(lambda: connect(self.path))
        self._pending: list[_PendingIngest] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._lock_file: BinaryIO | None = None
        _create_schema(self._conn())

    def _conn(self) -> sqlite3.Connection:
        return self._connections.get()

    def _rows(self, stream_id: str, events: Sequence[Event], first_version: int | None) -> list[EventColumns]:
        return event_columns(stream_id, events, first_version, MAX_EVENT_BYTES)

    def ingest(self, events: Sequence[Event]) -> IngestResult:
        pending = _PendingIngest(self._rows(FACTS_STREAM, events, None))
        with self._pending_lock:
            self._pending.append(pending)
        # Group commit: whichever request thread holds the commit lock writes every batch
        # queued so far in one transaction. Threads of a process then hand over in Python
        # instead of each polling SQLite's write lock with sleeps, and pay one fsync a group.
        with self._commit_lock:
            if not pending.done:
                self._commit_pending()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Wait for the other processes' ingest writers in the kernel, not in SQLite.

        SQLite's busy handler polls its lock with sleeps of up to 100 ms; a blocking flock
        on a sidecar file hands the turn over the moment the holder is done.
        """
        if self.path == ":memory:":
            yield
            return
        if self._lock_file is None:
            self._lock_file = open(f"{self.path}{WRITER_LOCK_SUFFIX}", "a+b")  # noqa: SIM115 - kept open
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def _commit_pending(self) -> None:
        with self._pending_lock:
            group, self._pending = self._pending, []
        results: list[IngestResult] = []
        failure: BaseException | None = None
        try:
            conn = self._conn()
            with self._writer_turn(), write_transaction(conn):
                results = [_insert_facts(conn, pending.rows) for pending in group]
        except BaseException as exc:
            failure = exc
        for index, pending in enumerate(group):
            if failure is None:
                pending.result = results[index]
            elif isinstance(failure, sqlite3.Error):
                pending.error = self._unavailable(failure)
                pending.error.__cause__ = failure
            else:
                pending.error = failure
            pending.done = True

    def append(self, stream_id: str, events: Sequence[Event], expected_version: int) -> int:
        if stream_id == FACTS_STREAM:
            raise ValueError(f"{FACTS_STREAM} is written with ingest(), not append()")
        rows = self._rows(stream_id, events, expected_version + 1)
        try:
            conn = self._conn()
            with write_transaction(conn):
                current = conn.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ? AND version IS NOT NULL",
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
            f"SELECT {_FACT_COLUMNS} FROM events WHERE position > ? AND +stream_id = ? ORDER BY position LIMIT ?",
            (after, FACTS_STREAM, limit),
        )
        events = tuple(_rows_to_facts(rows))
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
        self._connections.close()
        with self._commit_lock:
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
