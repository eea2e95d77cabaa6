"""GraphQL ``ingestEvents``: the REST batch endpoint's rules and result, as a mutation.

Input goes through the same validation module as ``POST /v1/events``; invalid input is
ONE GraphQL error with ``extensions.code = "BAD_USER_INPUT"`` and ``extensions.errors``
holding the same ``{index, field, message}`` entries, with the same wire field paths.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.scalars import JSON
from strawberry.types import Info

from api.auth import require_scope
from api.observability import count_ingested, count_rejected
from api.validation import parse_events
from domain.clock import now_utc
from domain.errors import StoreUnavailable, ValidationError


@strawberry.input(description="One event, as in POST /v1/events.")
class EventInput:
    type: str = strawberry.field(description='What happened: ^[a-z][a-z0-9_.-]{0,63}$, e.g. "sale".')
    occurred_at: datetime = strawberry.field(
        description="When it happened: RFC 3339 with an offset, at most 5 minutes in the future."
    )
    id: str | None = strawberry.field(default=None, description="Idempotency key; generated when absent.")
    source: str | None = strawberry.field(default=None, description="Who sent it, e.g. pos-store-12.")
    properties: JSON | None = strawberry.field(
        default=None,
        description="Flat object: string (≤ 1,024 chars), finite number, boolean or null values; ≤ 50 keys.",
    )

    def wire(self) -> dict[str, Any]:
        """The event as the REST body would carry it, for the shared validation."""
        return {
            "id": self.id,
            "type": self.type,
            "occurredAt": self.occurred_at,
            "source": self.source,
            "properties": self.properties,
        }


@strawberry.type(description="Outcome of a batch: every event is durably stored (or already was).")
class IngestResult:
    accepted: int = strawberry.field(description="Events newly stored.")
    duplicates: int = strawberry.field(description="Events whose id was already stored or repeated in the batch.")
    conflicts: int = strawberry.field(
        description="Duplicates whose type, occurredAt, source or properties differ from the stored event's;"
        " not stored: the stored event is unchanged."
    )
    conflict_ids: list[str] = strawberry.field(
        description="The id of each conflicting event, in batch order (once per conflicting event sent)."
    )
    ids: list[str] = strawberry.field(description="The id of every event sent, in order.")


@strawberry.type
class IngestMutation:
    @strawberry.mutation(description="Append 1 to 1,000 events; all or nothing. Needs the ingest scope.")
    def ingest_events(self, info: Info, events: list[EventInput]) -> IngestResult:
        require_scope(info, "ingest")
        pulse = info.context["pulse"]
        try:
            parsed = parse_events(
                [event.wire() for event in events],
                pulse.settings.max_future_seconds,
                now_utc(pulse.clock),
                max_past_days=pulse.settings.max_past_days,
            )
            result = pulse.store.ingest(parsed)
        except ValidationError as exc:
            count_rejected("invalid")
            raise GraphQLError(
                str(exc),
                extensions={"code": "BAD_USER_INPUT", "errors": [error.as_dict() for error in exc.errors]},
            ) from exc
        except StoreUnavailable as exc:
            count_rejected("unavailable")
            raise GraphQLError(
                f"the event store is unavailable, retry shortly: {exc}", extensions={"code": "UNAVAILABLE"}
            ) from exc
        count_ingested(result.accepted, result.duplicates)
        return IngestResult(
            accepted=result.accepted,
            duplicates=result.duplicates,
            conflicts=result.conflicts,
            conflict_ids=list(result.conflict_ids),
            ids=list(result.ids),
        )
