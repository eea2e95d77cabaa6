"""The recent-events feed on the embedded store: blocks of facts in the views file.

A batch adds ONE row per scope (an event type, or ``*`` for every type): a block holding
the batch's newest facts of that scope, newest first, one JSON line per fact, with the
block's newest and oldest ``occurredAt``. A row per fact (inserted, then trimmed a
thousand facts later) cost two B-tree inserts and two deletes per fact, most of the
projection worker's time under heavy ingest; a block costs one insert per batch.

Blocks that can no longer hold one of the newest ``keep`` (at least ``keep`` facts in
newer blocks are all later than the block's newest) are deleted in the batch's
transaction, and when more than ``MAX_BLOCKS`` remain (small batches, or late facts
interleaving) they are merged into one block of the newest ``keep``. A read walks the
scope's blocks newest first, decoding only the first ``limit`` lines of each, and stops
once the next block cannot hold anything newer than what it has.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

import orjson

from domain.errors import StoreUnavailable
from domain.events import FACTS_STREAM, RecordedEvent
from domain.ports import ALL_TYPES, PROJECTIONS_MARKER, RECENT_KEEP, RecentChanges, advanced, recent_marker
from projections.recent import recency
from storage.codec import dumps
from storage.sqlite import write_transaction
from storage.sqlite_views import SqliteViewStore, bump_markers, read_checkpoint, save_checkpoint

#: Blocks kept per scope before they are merged into one: enough that a stream of batches
#: of ``keep / MAX_BLOCKS`` facts or more in time order never needs a merge.
MAX_BLOCKS = 32

SCHEMA = """
CREATE TABLE IF NOT EXISTS recent_blocks (
    scope   TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    newest  INTEGER NOT NULL,
    oldest  INTEGER NOT NULL,
    size    INTEGER NOT NULL,
    facts   TEXT    NOT NULL,
    PRIMARY KEY (scope, seq)
) WITHOUT ROWID;
"""

# A fact's line: [id, type, occurredAt µs, receivedAt µs, source, position, properties].
_ID, _TYPE, _OCCURRED, _RECEIVED, _SOURCE, _POSITION, _PROPERTIES = range(7)


class SqliteRecentEvents:
    """``ProjectionStore[RecentChanges]`` and ``RecentEventsReader`` in the views file."""

    def __init__(self, views: SqliteViewStore, keep: int = RECENT_KEEP) -> None:
        self.views = views
        self.keep = keep
        conn = views.connection()
        conn.executescript(SCHEMA)
        _migrate_rows(conn, keep)

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
                encoded: dict[int, bytes] = {}  # the same list in two scopes is encoded once
                for scope, events in changes.scopes.items():
                    if not events:
                        continue
                    block = encoded.get(id(events))
                    if block is None:
                        block = encoded[id(events)] = b"\n".join(map(_line, events))
                    conn.execute(
                        "INSERT OR REPLACE INTO recent_blocks VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            scope,
                            upto,
                            events[0].occurred_micros,
                            events[-1].occurred_micros,
                            len(events),
                            block.decode(),
                        ),
                    )
                    self._trim(conn, scope)
                    touched.add(recent_marker(scope))
                bump_markers(conn, touched)
                save_checkpoint(conn, advanced(current, upto, changes))
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite view store {self.views.path}: {exc}") from exc
        return True

    def _trim(self, conn: sqlite3.Connection, scope: str) -> None:
        """Delete the scope's blocks that cannot hold one of the newest ``keep``; merge the
        rest into one block when there are more than ``MAX_BLOCKS``."""
        blocks = conn.execute(
            "SELECT seq, newest, oldest, size FROM recent_blocks WHERE scope = ? ORDER BY newest DESC, seq DESC",
            (scope,),
        ).fetchall()
        held, floor, stale = 0, None, []
        for seq, newest, oldest, size in blocks:
            if floor is not None and held >= self.keep and floor > newest:
                stale.append((scope, seq))
                continue
            held += size
            floor = oldest if floor is None else min(floor, oldest)
        if stale:
            conn.executemany("DELETE FROM recent_blocks WHERE scope = ? AND seq = ?", stale)
        if len(blocks) - len(stale) > MAX_BLOCKS:
            kept = _newest(conn, scope, self.keep)
            conn.execute("DELETE FROM recent_blocks WHERE scope = ?", (scope,))
            _write_block(conn, scope, max(seq for seq, *_ in blocks), kept)

    def recent_events(self, event_type: str | None, limit: int) -> list[RecordedEvent]:
        try:
            return _read(self.views.connection(), event_type or ALL_TYPES, limit)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite view store {self.views.path}: {exc}") from exc


def _line(event: RecordedEvent) -> bytes:
    text = event.properties_json if event.properties_json is not None else dumps(dict(event.properties))
    return orjson.dumps(
        [
            event.id,
            event.type,
            event.occurred_micros,
            event.received_micros,
            event.source,
            event.position,
            orjson.Fragment(text),
        ]
    )


def _write_block(conn: sqlite3.Connection, scope: str, seq: int, newest_first: Sequence[_Line]) -> None:
    if newest_first:
        conn.execute(
            "INSERT INTO recent_blocks VALUES (?, ?, ?, ?, ?, ?)",
            (
                scope,
                seq,
                newest_first[0][0].occurred_micros,
                newest_first[-1][0].occurred_micros,
                len(newest_first),
                "\n".join(line for _, line in newest_first),
            ),
        )


# A fact decoded, and its line as stored (a merge moves lines without encoding them again).
_Line = tuple[RecordedEvent, str]


def _newest(conn: sqlite3.Connection, scope: str, limit: int) -> list[_Line]:
    """The scope's newest ``limit`` facts with their lines, newest first (a fact held by
    two blocks once)."""
    if limit <= 0:
        return []
    found: dict[str, _Line] = {}
    newest_first: list[_Line] = []
    for newest, size, facts in conn.execute(
        "SELECT newest, size, facts FROM recent_blocks WHERE scope = ? ORDER BY newest DESC, seq DESC", (scope,)
    ):
        # Enough already, and all of it later than anything this block (or an older one) holds.
        if len(newest_first) >= limit and newest_first[limit - 1][0].occurred_micros > newest:
            break
        lines = facts.split("\n", limit)[:limit] if size > limit else facts.split("\n")
        for event, line in zip(_decode(lines), lines, strict=True):
            found.setdefault(event.id, (event, line))
        newest_first = sorted(found.values(), key=lambda pair: recency(pair[0]), reverse=True)
    return newest_first[:limit]


def _read(conn: sqlite3.Connection, scope: str, limit: int) -> list[RecordedEvent]:
    return [event for event, _ in _newest(conn, scope, limit)]


def _decode(lines: Iterable[str]) -> list[RecordedEvent]:
    # json, not orjson: properties keep integers beyond 64 bits exactly.
    new, cls = tuple.__new__, RecordedEvent
    return [
        new(
            cls,
            (
                fact[_ID],
                fact[_TYPE],
                fact[_OCCURRED],
                fact[_PROPERTIES],
                fact[_SOURCE],
                FACTS_STREAM,
                None,
                fact[_POSITION],
                fact[_RECEIVED],
                None,
            ),
        )
        for fact in json.loads("[" + ",".join(lines) + "]")
    ]


def _migrate_rows(conn: sqlite3.Connection, keep: int) -> None:
    """A views file from before blocks keeps one row per fact in ``recent_events``: move each
    scope's newest ``keep`` into one block, once."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'recent_events'").fetchone():
        return
    with write_transaction(conn):
        scopes = [scope for (scope,) in conn.execute("SELECT DISTINCT scope FROM recent_events")]
        for scope in scopes:
            rows = conn.execute(
                "SELECT id, type, occurred_at, properties, source, position, received_at FROM recent_events"
                " WHERE scope = ? ORDER BY occurred_at DESC, id DESC LIMIT ?",
                (scope, keep),
            ).fetchall()
            events = [
                RecordedEvent.at_micros(i, t, o, {}, s, FACTS_STREAM, None, p, r, properties_json=text)
                for i, t, o, text, s, p, r in rows
            ]
            if not conn.execute("SELECT 1 FROM recent_blocks WHERE scope = ?", (scope,)).fetchone():
                lines = [(event, _line(event).decode()) for event in events]
                _write_block(conn, scope, max((e.position or 0) for e in events), lines)
        conn.execute("DROP TABLE recent_events")
