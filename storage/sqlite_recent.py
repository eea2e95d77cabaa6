"""The recent-events feed on the embedded store: blocks of facts in the views file.

A batch adds ONE row per scope (an event type, or ``*`` for every type): a block holding
the batch's newest facts of that scope, newest first, as one JSON array (each fact an array
whose properties are their stored JSON text, as a string), with the block's newest and
oldest ``occurredAt``. A row per fact (inserted, then trimmed a thousand facts later) cost
two B-tree inserts and two deletes per fact, most of the projection worker's time under
heavy ingest; a block costs one insert and one orjson encoding per batch.

Facts older (by ``occurredAt``, then id) than the oldest of a block of ``keep`` are never
listed again, so a batch leaves them out. Blocks that can no longer hold one of the newest
``keep`` (at least ``keep`` facts in newer blocks are all later than the block's newest)
are deleted in the batch's transaction, and when more than ``MAX_BLOCKS`` remain (small
batches, facts sharing an ``occurredAt``, late facts interleaving) they are merged into one
block of the newest ``keep``, without decoding anyone's properties. A read walks the
scope's blocks newest first and stops once the next block cannot hold anything newer than
what it has.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import orjson

from domain.errors import StoreUnavailable
from domain.events import FACTS_STREAM, RecordedEvent
from domain.ports import ALL_TYPES, PROJECTIONS_MARKER, RECENT_KEEP, RecentChanges, advanced, recent_marker
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
    oldest_id TEXT  NOT NULL,
    size    INTEGER NOT NULL,
    facts   TEXT    NOT NULL,
    PRIMARY KEY (scope, seq)
) WITHOUT ROWID;
"""

# A fact in a block: [id, type, occurredAt µs, receivedAt µs, source, position, properties
# (JSON text)]. Properties stay text inside the block, so orjson, which reads integers
# beyond 64 bits as floats, never decodes them; ``json`` does, for the facts a read returns.
_ID, _TYPE, _OCCURRED, _RECEIVED, _SOURCE, _POSITION, _PROPERTIES = range(7)
_order = itemgetter(_OCCURRED, _ID)


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
                encoded: dict[int, list[list[Any]]] = {}  # the same list in two scopes is encoded once
                for scope, events in changes.scopes.items():
                    if not events:
                        continue
                    facts = encoded.get(id(events))
                    if facts is None:
                        facts = encoded[id(events)] = [_fact(event) for event in events]
                    floor = conn.execute(
                        "SELECT oldest, oldest_id FROM recent_blocks WHERE scope = ? AND size >= ?"
                        " ORDER BY oldest DESC, oldest_id DESC LIMIT 1",
                        (scope, self.keep),
                    ).fetchone()
                    if floor is not None:  # a block of `keep` facts: nothing older is ever listed
                        facts = [fact for fact in facts if _order(fact) > floor]
                        if not facts:
                            continue
                    _write_block(conn, scope, facts)
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
            kept = _merged(conn, scope, self.keep)
            conn.execute("DELETE FROM recent_blocks WHERE scope = ?", (scope,))
            _write_block(conn, scope, kept)

    def recent_events(self, event_type: str | None, limit: int) -> list[RecordedEvent]:
        try:
            return _read(self.views.connection(), event_type or ALL_TYPES, limit)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite view store {self.views.path}: {exc}") from exc


def _fact(event: RecordedEvent) -> list[Any]:
    text = event.properties_json if event.properties_json is not None else dumps(dict(event.properties))
    return [event.id, event.type, event.occurred_micros, event.received_micros, event.source, event.position, text]


def _write_block(conn: sqlite3.Connection, scope: str, newest_first: Sequence[list[Any]]) -> None:
    """A new block of ``scope``, numbered after its others (not by log position: a parked
    event's retry writes a block of its own, which must never take the place of another)."""
    if newest_first:
        conn.execute(
            "INSERT INTO recent_blocks VALUES"
            " (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM recent_blocks WHERE scope = ?1), ?2, ?3, ?4, ?5, ?6)",
            (
                scope,
                newest_first[0][_OCCURRED],
                newest_first[-1][_OCCURRED],
                newest_first[-1][_ID],
                len(newest_first),
                orjson.dumps(newest_first).decode(),
            ),
        )


def _merged(conn: sqlite3.Connection, scope: str, keep: int) -> list[list[Any]]:
    """The scope's newest ``keep`` facts across its blocks, newest first (a fact held by two
    blocks once)."""
    seen: set[str] = set()
    facts: list[list[Any]] = []
    for (block,) in conn.execute("SELECT facts FROM recent_blocks WHERE scope = ?", (scope,)):
        for fact in orjson.loads(block)[:keep]:
            if fact[_ID] not in seen:
                seen.add(fact[_ID])
                facts.append(fact)
    return heapq.nlargest(keep, facts, key=_order)


def _read(conn: sqlite3.Connection, scope: str, limit: int) -> list[RecordedEvent]:
    """The scope's newest ``limit`` facts, newest first (a fact held by two blocks once)."""
    if limit <= 0:
        return []
    found: dict[str, list[Any]] = {}
    kth: list[Any] | None = None  # the limit-th newest so far
    for newest, block in conn.execute(
        "SELECT newest, facts FROM recent_blocks WHERE scope = ? ORDER BY newest DESC, seq DESC", (scope,)
    ):
        # Enough already, and all of it later than anything this block (or an older one) holds.
        if kth is not None and kth[_OCCURRED] > newest:
            break
        for fact in orjson.loads(block)[:limit]:
            found.setdefault(fact[_ID], fact)
        if len(found) >= limit:
            kth = heapq.nlargest(limit, found.values(), key=_order)[-1]
    return [_event(fact) for fact in heapq.nlargest(limit, found.values(), key=_order)]


def _event(fact: list[Any]) -> RecordedEvent:
    # json, not orjson: properties keep integers beyond 64 bits exactly.
    text = fact[_PROPERTIES]
    return RecordedEvent.at_micros(
        fact[_ID],
        fact[_TYPE],
        fact[_OCCURRED],
        json.loads(text),
        fact[_SOURCE],
        FACTS_STREAM,
        None,
        fact[_POSITION],
        fact[_RECEIVED],
        properties_json=text,
    )


def _migrate_rows(conn: sqlite3.Connection, keep: int) -> None:
    """A views file from before blocks keeps one row per fact in ``recent_events``: move each
    scope's newest ``keep`` into one block, once."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'recent_events'").fetchone():
        return
    with write_transaction(conn):
        scopes = [scope for (scope,) in conn.execute("SELECT DISTINCT scope FROM recent_events")]
        for scope in scopes:
            rows = conn.execute(
                "SELECT id, type, occurred_at, received_at, source, position, properties FROM recent_events"
                " WHERE scope = ? ORDER BY occurred_at DESC, id DESC LIMIT ?",
                (scope, keep),
            ).fetchall()
            if not conn.execute("SELECT 1 FROM recent_blocks WHERE scope = ?", (scope,)).fetchone():
                _write_block(conn, scope, [list(row) for row in rows])
        conn.execute("DROP TABLE recent_events")
