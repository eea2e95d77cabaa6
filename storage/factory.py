"""Builds the adapters the settings ask for; the one place that knows both backends."""

from __future__ import annotations

from domain.ports import EventStore, ViewStore
from domain.settings import Settings


def open_event_store(settings: Settings) -> EventStore:
    if settings.store == "dynamodb":
        from storage.dynamodb import DynamoEventStore

        return DynamoEventStore.from_settings(settings)
    from storage.sqlite import SqliteEventStore

    return SqliteEventStore(settings.db)


def open_view_store(settings: Settings) -> ViewStore:
    """The read models (counters, gauges, checkpoints) of the configured backend."""
    if settings.store == "dynamodb":
        from storage.dynamodb_views import DynamoViewStore

        return DynamoViewStore.from_settings(settings)
    from storage.sqlite_views import SqliteViewStore

    return SqliteViewStore.beside(settings.db)
