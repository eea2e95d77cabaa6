"""New generations of read models on the embedded store: a shadow views file per replay.

A replay of projection P writes into ``<views stem>.replay-P.db`` beside the views file,
through P's own store adapters and handler (the same code as live projection, on another
file), one page per transaction with P's checkpoint in that file: a replay killed at any
point resumes from its last page. The live views file is not locked meanwhile.

``switch`` is the one short write transaction on the live file: with its write lock held
(the live worker waits, readers go on reading the old rows), the shadow is brought up
to the live checkpoint, P's tables are replaced by the shadow's rows, P's checkpoint by
the shadow's, and every change marker moves once so subscriptions re-render once. Then
the shadow file is deleted (the old generation's rows went with the transaction).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from domain.micros import now_micros
from domain.ports import PROJECTIONS_MARKER, Checkpoint
from projections.counters import PROJECTION as COUNTERS
from projections.recent import PROJECTION as RECENT
from storage.sqlite import connect
from storage.sqlite_views import (
    CHECKPOINT_COLUMNS,
    SqliteViewStore,
    bump_markers,
    read_checkpoint,
    save_checkpoint,
)

log = logging.getLogger(__name__)

#: The tables each replayable read model owns in the views file.
TABLES: dict[str, tuple[str, ...]] = {
    COUNTERS: ("counters", "gauges", "event_types"),
    RECENT: ("recent_blocks",),
}


def _shadow_checkpoint(conn: sqlite3.Connection, projection: str) -> Checkpoint:
    row = conn.execute(
        f"SELECT {CHECKPOINT_COLUMNS} FROM shadow.checkpoints WHERE projection = ? AND partition = ''", (projection,)
    ).fetchone()
    return Checkpoint(*row) if row else Checkpoint(projection, "")


def shadow_path(views_path: str, projection: str) -> Path:
    path = Path(views_path)
    return path.with_name(f"{path.stem}.replay-{projection}{path.suffix}")


class SqliteGeneration:
    """The new generation of one read model, being filled by a replay."""

    def __init__(self, live: SqliteViewStore, projection: str, shadow: SqliteViewStore) -> None:
        self.live = live
        self.projection = projection
        self.shadow = shadow

    def position(self) -> int:
        """The last log position the new generation holds."""
        return self.shadow.checkpoint(self.projection).position

    def switch(self, catch_up: Callable[[int], None]) -> Checkpoint:
        """Replace the live read model by this generation in one write transaction;
        ``catch_up(position)`` first brings the generation to the live ``position`` (what
        the live worker added since the replay read the log). Returns the new checkpoint."""
        tables = TABLES[self.projection]
        conn = connect(self.live.path)
        conn.execute("PRAGMA synchronous=NORMAL")
        # Rows go from file to file inside SQLite (INSERT ... SELECT), not through Python.
        conn.execute("ATTACH DATABASE ? AS shadow", (self.shadow.path,))
        try:
            # Deferred, then a write to the live file first: its write lock is held from here
            # on, while the shadow file is only read (after the catch-up wrote to it through
            # its own connection), so the catch-up never waits for this transaction.
            conn.execute("BEGIN")
            try:
                conn.execute("UPDATE main.change_markers SET version = version + 1")
                live = read_checkpoint(conn, self.projection, "")
                if live.position > self.position():
                    catch_up(live.position)
                new = _shadow_checkpoint(conn, self.projection)
                for table in tables:
                    conn.execute(f"DELETE FROM main.{table}")
                    conn.execute(f"INSERT INTO main.{table} SELECT * FROM shadow.{table}")
                save_checkpoint(conn, replace(new, updated_at=now_micros()))
                # Every subscription re-renders once on the new generation (markers moved
                # above); markers of keys only the new generation has start here.
                known = {key for (key,) in conn.execute("SELECT key FROM main.change_markers")}
                fresh = {key for (key,) in conn.execute("SELECT key FROM shadow.change_markers")}
                bump_markers(conn, (fresh | {PROJECTIONS_MARKER}) - known)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()
        log.info("replay of %s switched at position %d", self.projection, new.position)
        return new

    def drop(self) -> None:
        """Delete the generation's file (after a switch, or to start a replay afresh)."""
        path = self.shadow.path
        self.shadow.close()
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)


class SqliteGenerations:
    """Opens new generations beside a live views file; ``prepare_shadow`` gives a fresh or
    resumed shadow store its read models' tables (e.g. the recent-events schema)."""

    def __init__(
        self,
        live: SqliteViewStore,
        timezone: str,
        prepare_shadow: Callable[[SqliteViewStore], None] | None = None,
    ) -> None:
        self.live = live
        self.timezone = timezone
        self.prepare_shadow = prepare_shadow

    def replayable(self) -> list[str]:
        return sorted(TABLES)

    def open(self, projection: str, fresh: bool = False) -> SqliteGeneration:
        """The new generation of ``projection``: resumed where a killed replay left it,
        unless ``fresh``."""
        if projection not in TABLES:
            raise ValueError(f"{projection!r} cannot be replayed; one of {', '.join(sorted(TABLES))}")
        path = shadow_path(self.live.path, projection)
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        shadow = SqliteViewStore(path)
        # A shadow begun under another day time zone is started again.
        shadow.reset_if_timezone_changed(self.timezone)
        if self.prepare_shadow is not None:
            self.prepare_shadow(shadow)
        return SqliteGeneration(self.live, projection, shadow)
