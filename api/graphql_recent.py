"""GraphQL for the recent-events feed: ``recentEvents`` and ``recentEventsUpdated``.

Both need the ``read`` scope. The subscription is the query, live, on the feed's change
marker (``recent:<type>`` or ``recent:*``), through the same machinery as
``seriesUpdated``: identical subscribers share one read per change.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.auth import caller, require_scope
from api.graphql_live import LiveValue, open_stream
from api.graphql_metrics import guarded
from domain.events import RecordedEvent as Recorded
from services import recent as feed


@strawberry.type(description="A stored fact.")
class RecordedEvent:
    id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    source: str | None
    properties: JSON

    @classmethod
    def of(cls, event: Recorded) -> RecordedEvent:
        return cls(
            id=event.id,
            type=event.type,
            occurred_at=event.occurred_at,
            received_at=event.received_at,
            source=event.source,
            properties=dict(event.properties),  # a read-only view of the decoded JSON: copy the top
        )


def _recent(info: Info, event_type: str | None, limit: int) -> list[RecordedEvent]:
    pulse, principal = caller(info)
    return [
        RecordedEvent.of(e) for e in guarded(lambda: feed.recent_events(principal, pulse.recent, event_type, limit))
    ]


@strawberry.type
class RecentQuery:
    @strawberry.field(
        description="The newest facts (of one type, or of every type), newest occurredAt first, then id;"
        f" at most {feed.MAX_LIMIT}. Needs the read scope."
    )
    def recent_events(self, info: Info, type: str | None = None, limit: int = 50) -> list[RecordedEvent]:
        return _recent(info, type, limit)


@strawberry.type
class RecentSubscription:
    @strawberry.subscription(
        description="The `recentEvents` query, live: the feed, then again whenever a new fact enters it."
        " Needs the read scope."
    )
    async def recent_events_updated(
        self, info: Info, type: str | None = None, limit: int = 50
    ) -> AsyncGenerator[list[RecordedEvent], None]:
        principal = require_scope(info, "read")
        pulse = info.context["pulse"]
        guarded(lambda: feed.check(type, limit))
        live = LiveValue(
            pulse,
            principal,
            ("recent", type, limit),
            frozenset({feed.marker(type)}),
            lambda now: [RecordedEvent.of(e) for e in feed.recent_events(principal, pulse.recent, type, limit)],
            same=lambda a, b: [e.id for e in a] == [e.id for e in b],
        )
        return await open_stream(live)
