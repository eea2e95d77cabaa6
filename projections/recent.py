"""The recent-events feed: the newest facts per event type and overall ("latest sales").

Pure: a batch of facts in, ``RecentChanges`` out. The store keeps the newest
``RECENT_KEEP`` per scope, ordered by ``occurredAt`` then id, so a late fact lands in its
place and a resent one (same id) changes nothing.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

from domain.events import RecordedEvent
from domain.micros import epoch_micros
from domain.ports import ALL_TYPES, RECENT_KEEP, RecentChanges

PROJECTION = "recent-events"


def recency(event: RecordedEvent) -> tuple[int, str]:
    """The feed's order: greater is newer."""
    return epoch_micros(event.occurred_at), event.id


def newest(events: Iterable[RecordedEvent], keep: int) -> list[RecordedEvent]:
    """At most ``keep`` events, newest first."""
    return heapq.nlargest(keep, events, key=recency)


class RecentEventsProjection:
    name = PROJECTION
    version = 1
    event_types: frozenset[str] | None = None

    def __init__(self, keep: int = RECENT_KEEP) -> None:
        self.keep = keep

    def project(self, events: Sequence[RecordedEvent]) -> RecentChanges:
        by_type: dict[str, list[RecordedEvent]] = {}
        for event in events:
            by_type.setdefault(event.type, []).append(event)
        scopes = {etype: newest(group, self.keep) for etype, group in by_type.items()}
        if events:
            scopes[ALL_TYPES] = newest(events, self.keep)
        watermark = max((epoch_micros(e.occurred_at) for e in events), default=None)
        return RecentChanges(scopes=scopes, events=len(events), watermark=watermark)
