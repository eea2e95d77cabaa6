"""A subscription stream's memory does not grow with the number of values it pushes.

graphql-core builds each push's executor as a shallow copy of the subscription's, so they
all shared one memo of collected sub-fields, keyed by the identity of a field list that
is new on every push: a stream open for an hour kept every push's entries (a gunicorn
worker grew by about 30 MB per 10 minutes under 50 streams)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator

import strawberry
from graphql.execution.collect_fields import FieldDetails

from api.graphql_live import SharedRenderExecutionContext

PUSHES = 300


@strawberry.type
class Point:
    at: int
    value: float


@strawberry.type
class Chart:
    name: str
    points: list[Point]


@strawberry.type
class Query:
    ping: str = "pong"


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def chart(self) -> AsyncGenerator[Chart, None]:
        for i in range(PUSHES):
            # A new value object per push, as the change watcher hands out after each change.
            yield Chart(name="revenue", points=[Point(at=i, value=float(j)) for j in range(3)])


SCHEMA = strawberry.Schema(query=Query, subscription=Subscription, execution_context_class=SharedRenderExecutionContext)


def live_field_details() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, FieldDetails))


def test_a_long_stream_keeps_no_state_per_push() -> None:
    async def consume() -> tuple[int, int]:
        stream = await SCHEMA.subscribe("subscription { chart { name points { at value } } }")
        pushes = grown = 0
        before = 0
        async for result in stream:
            assert not result.errors, result.errors
            assert result.data["chart"]["points"][0]["at"] == pushes
            pushes += 1
            if pushes == 10:
                before = live_field_details()
            if pushes == PUSHES:
                # Measured while the stream is still open: its executor is alive.
                grown = live_field_details() - before
        return pushes, grown

    pushes, grown = asyncio.run(consume())
    assert pushes == PUSHES
    assert grown < 20, f"{grown} field lists kept for {PUSHES - 10} pushes"
