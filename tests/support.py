"""Small helpers shared by test packages."""

from __future__ import annotations

from domain.events import RecordedEvent
from domain.ports import EventStore


def all_facts(store: EventStore, page_size: int = 1000) -> list[RecordedEvent]:
    """Every fact in the store, read page by page as a catching-up worker would."""
    facts: list[RecordedEvent] = []
    cursor = None
    while True:
        page = store.read_facts(cursor, limit=page_size)
        if not page.events:
            return facts
        facts.extend(page.events)
        cursor = page.cursor
