"""GraphQL for parked events: ``parkedEvents`` (read), ``retryParked`` and ``dropParked``
(admin). See ``services.parked`` for why listing needs only ``read``."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.auth import caller
from api.graphql_metrics import guarded
from bootstrap.parked import parked_service
from domain.parked import ParkedEvent


@strawberry.type(description="An event a projection could not apply after its retries, set aside.")
class ParkedEventInfo:
    projection: str
    partition: str = strawberry.field(description='"" for the SQLite log; a shard id for DynamoDB Streams.')
    event_id: str
    position: str = strawberry.field(description="The event's position (or sequence number), as text.")
    event_type: str
    occurred_at: datetime
    properties: JSON
    error: str = strawberry.field(description="The last error the projection raised on it.")
    attempts: int
    first_failure: datetime
    last_failure: datetime


@strawberry.type
class RetryParkedResult:
    applied: bool = strawberry.field(description="True: the event is in the read model now (exactly once).")
    error: str | None = strawberry.field(description="Why it failed again (it stays parked).")
    parked: ParkedEventInfo | None = strawberry.field(description="The record, when it is still parked.")


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def parked_info(parked: ParkedEvent) -> ParkedEventInfo:
    return ParkedEventInfo(
        projection=parked.projection,
        partition=parked.partition,
        event_id=parked.event_id,
        position=str(parked.position),
        event_type=parked.event.type,
        occurred_at=parked.event.occurred_at,
        properties=dict(parked.event.properties),
        error=parked.error,
        attempts=parked.attempts,
        first_failure=_moment(parked.first_failure),
        last_failure=_moment(parked.last_failure),
    )


@strawberry.type
class ParkedQuery:
    @strawberry.field(description="Events the projections parked (of one projection, or all). Needs read.")
    def parked_events(self, info: Info, projection: str | None = None) -> list[ParkedEventInfo]:
        pulse, principal = caller(info)
        return [parked_info(p) for p in guarded(lambda: parked_service(pulse).list(principal, projection))]


@strawberry.type
class ParkedMutation:
    @strawberry.mutation(description="Apply a parked event to its projection again, exactly once. Needs admin.")
    def retry_parked(self, info: Info, projection: str, event_id: str) -> RetryParkedResult:
        pulse, principal = caller(info)
        outcome = guarded(lambda: parked_service(pulse).retry(principal, projection, event_id))
        still = None if outcome.still_parked is None else parked_info(outcome.still_parked)
        return RetryParkedResult(applied=outcome.applied, error=outcome.error, parked=still)

    @strawberry.mutation(description="Forget a parked event (the read model never counts it). Needs admin.")
    def drop_parked(self, info: Info, projection: str, event_id: str) -> ParkedEventInfo:
        pulse, principal = caller(info)
        return parked_info(guarded(lambda: parked_service(pulse).drop(principal, projection, event_id)))
