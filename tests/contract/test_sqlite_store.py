"""What only the SQLite adapter has to say: a broken database file is an outage, not a crash."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.errors import StoreUnavailable
from domain.events import Event
from storage.sqlite import SqliteEventStore


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
    store.ingest([Event(type="sale", occurred_at=datetime.now(UTC), properties={"amount": 1})])
    store.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)

    sale = Event(type="sale", occurred_at=datetime.now(UTC))
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
