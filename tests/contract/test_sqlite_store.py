"""What only the SQLite adapter has to say: a broken database file is an outage, not a crash;
the events table carries no index that nothing reads."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from domain.errors import ConcurrencyError, StoreUnavailable
from domain.events import Event
from storage.sqlite import SqliteEventStore
from tests.support import all_facts, in_threads, real_now


def in_new_thread(action: Callable[[], object]) -> object:
    """Run ``action`` on a fresh thread (so on a fresh connection); return or raise its outcome."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(action())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


def test_a_database_file_that_became_garbage_raises_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "pulse.db"
    store = SqliteEventStore(path)
    store.ingest([Event(type="sale", occurred_at=real_now(), properties={"amount": 1})])
    store.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)

    sale = Event(type="sale", occurred_at=real_now())
    for action in (
        store.ping,
        store.read_facts,
        lambda: store.read_stream("api-keys"),
        store.last_position,
        lambda: store.ingest([sale]),
        lambda: store.append("dash-1", [sale], 0),
    ):
        with pytest.raises(StoreUnavailable, match=r"pulse\.db"):
            in_new_thread(action)


def test_concurrent_batches_with_shared_ids_accept_each_id_exactly_once(tmp_path: Path) -> None:
    """Batches from many request threads are committed in groups; every id is still
    accepted by exactly one call, and a failure-free group loses nothing."""
    store = SqliteEventStore(tmp_path / "pulse.db")
    barrier = threading.Barrier(8)
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        barrier.wait()
        for round_ in range(20):
            # Each id is sent by two clients: n's own and its neighbour's.
            ids = [f"e-{round_}-{n}-{i}" for i in range(25)] + [f"e-{round_}-{(n + 1) % 8}-{i}" for i in range(25)]
            result = store.ingest([Event(id=i, type="sale", occurred_at=real_now()) for i in ids])
            with lock:
                results.extend(zip(result.ids, result.duplicate, strict=True))

    in_threads(client, range(8))

    accepted = [event_id for event_id, duplicate in results if not duplicate]
    assert len(accepted) == len(set(accepted)) == 8 * 20 * 25
    stored = [e.id for e in all_facts(store)]
    assert sorted(stored) == sorted(accepted)
    store.close()


def test_a_file_made_with_the_old_type_time_index_loses_it_on_open(tmp_path: Path) -> None:
    path = tmp_path / "pulse.db"
    SqliteEventStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE INDEX events_by_type_time ON events (type, occurred_at)")
    conn.close()

    SqliteEventStore(path).close()
    conn = sqlite3.connect(path)
    indexes = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'").fetchall()
    conn.close()
    # The id's (a constraint's) and the aggregate streams' (stream_id, version): reads go by
    # position and stream.
    assert sorted(name for (name,) in indexes) == ["events_by_stream_version", "sqlite_autoindex_events_1"], indexes


def test_facts_stay_out_of_the_stream_version_index(tmp_path: Path) -> None:
    """A fact's insert updates the id index only: the (stream, version) index is partial,
    so ingest pays for one index, not two."""
    store = SqliteEventStore(tmp_path / "pulse.db")
    store.ingest([Event(id=f"f{i}", type="sale", occurred_at=real_now()) for i in range(3)])
    store.append("dashboard:x", [Event(id="d1", type="created", occurred_at=real_now())], 0)
    conn = sqlite3.connect(tmp_path / "pulse.db")
    partial = {name: flag for _, name, _, _, flag in conn.execute("PRAGMA index_list(events)")}
    versions = conn.execute("SELECT id, version FROM events ORDER BY position").fetchall()
    conn.close()
    store.close()
    assert partial["events_by_stream_version"] == 1  # only rows WHERE version IS NOT NULL
    assert versions == [("f0", None), ("f1", None), ("f2", None), ("d1", 1)]


def test_a_file_made_before_the_partial_index_keeps_its_table_and_works(tmp_path: Path) -> None:
    path = tmp_path / "pulse.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE events (position INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
            " stream_id TEXT NOT NULL, version INTEGER, type TEXT NOT NULL, occurred_at INTEGER NOT NULL,"
            " source TEXT, properties TEXT NOT NULL, received_at INTEGER NOT NULL, UNIQUE (stream_id, version));"
        )
    conn.close()
    store = SqliteEventStore(path)
    store.ingest([Event(id="f1", type="sale", occurred_at=real_now())])
    assert store.append("s", [Event(id="a1", type="created", occurred_at=real_now())], 0) == 1
    with pytest.raises(ConcurrencyError):
        store.append("s", [Event(id="a2", type="created", occurred_at=real_now())], 0)
    assert [e.id for e in store.read_stream("s")] == ["a1"]
    store.close()
    conn = sqlite3.connect(path)
    indexes = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'").fetchall()
    conn.close()
    assert all(name.startswith("sqlite_autoindex_") for (name,) in indexes), indexes
