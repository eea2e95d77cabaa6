"""Create and drop the stores' tables: `pulse tables create` and test fixtures."""

from __future__ import annotations

from pathlib import Path

from domain.settings import Settings


def create_tables(settings: Settings) -> list[str]:
    """Create what the configured backend needs, idempotently; returns what now exists."""
    if settings.store == "dynamodb":
        from storage import dynamodb

        return dynamodb.create_tables(settings)
    from storage.sqlite import SqliteEventStore

    SqliteEventStore(settings.db).close()
    return [settings.db]


def drop_tables(settings: Settings) -> None:
    """Delete every table of the configured backend, data and all."""
    if settings.store == "dynamodb":
        from storage import dynamodb

        dynamodb.drop_tables(settings)
        return
    from storage.sqlite import WRITER_LOCK_SUFFIX

    for suffix in ("", "-wal", "-shm", WRITER_LOCK_SUFFIX):
        Path(settings.db + suffix).unlink(missing_ok=True)
