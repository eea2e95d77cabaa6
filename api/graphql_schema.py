"""The GraphQL schema served at /graphql."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.health import health_report


@strawberry.type
class Health:
    status: str
    version: str
    store: str
    message: str | None = None


@strawberry.type
class Query:
    @strawberry.field(description="Is the store reachable, and which version of Pulse runs.")
    def health(self, info: Info) -> Health:
        report, _ = health_report(info.context["pulse"])
        return Health(**report)


schema = strawberry.Schema(query=Query)
