"""The GraphQL schema served at /graphql, merged from each area's root types.

Each area (health, ingestion, metrics, live, ...) keeps its resolvers in its own module and
adds its root classes to the tuples below.
"""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext, Info

from api.graphql_dashboards import DashboardsMutation, DashboardsQuery, DashboardsSubscription
from api.graphql_ingest import IngestMutation
from api.graphql_limits import RequestGuard
from api.graphql_live import LiveMutation, LiveSubscription, SharedRenderExecutionContext
from api.graphql_metrics import MetricsMutation, MetricsQuery
from api.graphql_parked import ParkedMutation, ParkedQuery
from api.graphql_recent import RecentQuery, RecentSubscription
from api.health import health_report


@strawberry.type
class Health:
    status: str
    version: str
    store: str
    message: str | None = None


@strawberry.type
class HealthQuery:
    @strawberry.field(description="Is the store reachable, and which version of Pulse runs.")
    def health(self, info: Info) -> Health:
        report, _ = health_report(info.context["pulse"])
        return Health(**report)


QUERIES: tuple[type, ...] = (HealthQuery, MetricsQuery, RecentQuery, ParkedQuery, DashboardsQuery)
MUTATIONS: tuple[type, ...] = (IngestMutation, MetricsMutation, LiveMutation, ParkedMutation, DashboardsMutation)
SUBSCRIPTIONS: tuple[type, ...] = (LiveSubscription, RecentSubscription, DashboardsSubscription)

Query = merge_types("Query", QUERIES)
Mutation = merge_types("Mutation", MUTATIONS) if MUTATIONS else None
Subscription = merge_types("Subscription", SUBSCRIPTIONS) if SUBSCRIPTIONS else None


class PulseSchema(strawberry.Schema):
    """Logs a traceback only for errors Pulse did not raise on purpose.

    Client mistakes (bad arguments, auth, syntax) reach the client as GraphQL errors with
    an ``extensions.code``; a traceback in the server log for each would bury real faults.
    """

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        unexpected = [
            error
            for error in errors
            if error.original_error is not None
            # Without a path it failed before anything ran: a variable the client sent
            # that a scalar refused (e.g. not a DateTime), answered with a code.
            and error.path is not None
            and not (isinstance(error.original_error, GraphQLError) and error.original_error.extensions.get("code"))
        ]
        if unexpected:
            super().process_errors(unexpected, execution_context)


schema = PulseSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    # Renders a live push once for every subscriber with the same operation (api/graphql_live.py).
    execution_context_class=SharedRenderExecutionContext,
    # Refuses over-budget documents and, per PULSE_INTROSPECTION, introspection, before they run.
    # ParserCache: a dashboard's query (600 fields) is the same text on every view; parse it once (LRU of 128).
    extensions=[RequestGuard, ParserCache],
)
