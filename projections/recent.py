"""The recent-events feed: the newest facts per event type and overall ("latest sales").

Pure: a batch of facts in, ``RecentChanges`` out. The store keeps the newest
``RECENT_KEEP`` per scope, ordered by ``occurredAt`` then id, so a late fact lands in its
place and a resent one (same id) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice
from operator import attrgetter, lt

from domain.events import RecordedEvent
from domain.ports import ALL_TYPES, RECENT_KEEP, RecentChanges

PROJECTION = "recent-events"


#: The feed's order, greater is newer: ``occurredAt`` (epoch µs), then id.
recency = attrgetter("occurred_micros", "id")
_OCCURRED = attrgetter("occurred_micros")
_TYPE = attrgetter("type")


def newest(events: Iterable[RecordedEvent], keep: int) -> list[RecordedEvent]:
    """At most ``keep`` events, newest first (what ``heapq.nlargest`` gives, but a batch of
    the log is mostly in time order already, which Timsort runs through in linear time,
    where a heap would replace its smallest entry for almost every fact).

    A sequence whose ``occurredAt`` strictly rises (a catch-up page, checked in C) is in
    recency order already: its last ``keep``, reversed, with no key tuple per fact."""
    if keep >= 0 and isinstance(events, Sequence) and len(events) > 1:
        occurred = list(map(_OCCURRED, events))
        if all(map(lt, occurred, islice(occurred, 1, None))):
            return list(events[: -keep - 1 : -1])
    return sorted(events, key=recency, reverse=True)[:keep]


class RecentEventsProjection:
    name = PROJECTION
    version = 1
    event_types: frozenset[str] | None = None

    def __init__(self, keep: int = RECENT_KEEP) -> None:
        self.keep = keep

    def project(self, events: Sequence[RecordedEvent]) -> RecentChanges:
        if not events:
            return RecentChanges(scopes={}, events=0, watermark=None)
        every = newest(events, self.keep)
        types = list(map(_TYPE, events))
        if types.count(types[0]) == len(types):  # a page of one type (counted in C): its newest are every type's
            return RecentChanges(
                scopes={ALL_TYPES: every, types[0]: every}, events=len(events), watermark=every[0].occurred_micros
            )
        by_type: dict[str, list[RecordedEvent]] = {}
        for event in events:
            by_type.setdefault(event.type, []).append(event)
        scopes = {ALL_TYPES: every}
        for etype, group in by_type.items():
            # A batch of one type (the common case) has the same newest as every type.
            scopes[etype] = every if len(group) == len(events) else newest(group, self.keep)
        return RecentChanges(scopes=scopes, events=len(events), watermark=every[0].occurred_micros)
