"""Builds the adapters the settings ask for; the one place that knows both backends."""

from __future__ import annotations

from domain.ports import EventStore
from domain.settings import Settings


def open_event_store(settings: Settings) -> EventStore:
    if settings.store == "dynamodb":
        from storage.dynamodb import DynamoEventStore

        return DynamoEventStore.from_settings(settings)
    from storage.sqlite import SqliteEventStore

    return SqliteEventStore(settings.db)
