"""Live subscriptions: ``seriesUpdated``, ``gaugeUpdated``, ``projectionStatus``, and the
``createStreamToken`` mutation for browsers' ``EventSource``.

Each subscription answers with the same type and the same code as its query
(``series_of``, ``gauge_readings_of``, ``projections_of``), first with the
current value, then whenever it changes. A change is noticed through the process's
change watcher (``api.live``): the subscription depends on a change marker of the view
store (``metric:<key>``, ``gauge:<name>``, ``projections``), and subscribers with the same
arguments share one recomputation per change. A value equal to the last one pushed is
not pushed again. A sliding series (``last``) is also recomputed when the wall clock
enters a new bucket, and the projection status every ``STATUS_REFRESH_SECONDS`` (its lag
grows while a worker is stuck, without any marker moving).

Authentication and every bad argument are checked before the stream starts and come back
as the stream's first and only payload (a GraphQL error with the same ``extensions.code``
as the query), followed by ``complete``. A stream whose key is revoked ends with an
``UNAUTHENTICATED`` error within about ``REVALIDATE_SECONDS``.

The resolvers are coroutines returning the stream rather than async generators, so
their checks run before the first chunk is sent.

Rendering is shared too: graphql-core executes a subscription's selection set on every
pushed value for every subscriber, which for a 60-point chart costs more than everything
else per push. Subscribers with identical arguments get the very same value object, so
``SharedRenderExecutionContext`` renders it once per (value, operation, variables) and
hands the same ``ExecutionResult`` to all of them; its data (``SharedData``) is then
encoded to JSON once, not once per subscriber (``PulseGraphQLView.encode_json``). This relies on the pushed types
(``Series``, ``GaugeReading``, ``ProjectionStatus``) resolving from the value alone; a
field reading the request (per-caller data) must not be added to them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Hashable
from datetime import datetime
from typing import Generic, TypeVar

import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError, print_ast
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import Info

from api import stream_tokens
from api.auth import Principal, Unauthenticated, ensure_not_revoked, require_scope
from api.context import Pulse
from api.graphql_metrics import (
    DimensionFilter,
    GaugeReading,
    ProjectionStatus,
    Resolution,
    Series,
    bucketing_of,
    gauge_readings_of,
    guarded,
    projections_of,
    series_of,
)
from api.live import ChangeWatcher, SharedData, SharedResults, covers, watcher_for
from api.stream_sink import current_sink
from domain.clock import Clock
from domain.ports import PROJECTIONS_MARKER, gauge_marker, metric_marker

T = TypeVar("T")
#: How often an open stream re-checks that its key is not revoked.
REVALIDATE_SECONDS = 5.0
#: How often projectionStatus is recomputed without a marker moving (lag keeps growing).
STATUS_REFRESH_SECONDS = 2.0
# Wake a little after a bucket boundary, never just before it.
_BOUNDARY_SLACK = 0.01

#: ``slot(now)``: what time the value depends on (an integer that grows, e.g. the current
#: bucket) and how many seconds until that changes (None: never).
Slot = Callable[[float], tuple[int, float | None]]


def live_watcher(pulse: Pulse) -> ChangeWatcher:
    """This process's change watcher of the app's view store."""
    return watcher_for(pulse)


def _never(now: float) -> tuple[int, float | None]:
    return 0, None


class LiveValue(Generic[T]):
    """One subscriber's value, recomputed (shared with identical subscribers) whenever its
    change markers or its time slot move, pushed when it differs from the last push."""

    def __init__(
        self,
        pulse: Pulse,
        principal: Principal,
        arguments: Hashable,
        keys: frozenset[str],
        compute: Callable[[float], T],
        slot: Slot = _never,
        same: Callable[[T, T], bool] = lambda a, b: a == b,
        clock: Clock | None = None,
    ) -> None:
        self.pulse = pulse
        self.principal = principal
        self.arguments = arguments
        self.keys = keys
        self.watcher = live_watcher(pulse)
        self._compute = compute
        self._slot = slot
        self._same = same
        self._clock = (clock or pulse.clock).now
        self._token: Hashable = ()

    def _token_at(self, now: float) -> tuple[int, ...]:
        return (*self.watcher.versions(self.keys), self._slot(now)[0])

    def current(self) -> T:
        """The value now; raises GraphQL errors like the query."""
        now = self._clock()
        token = self._token_at(now)
        value, self._token = self.watcher.shared(self.arguments, token, lambda: guarded(lambda: self._compute(now)))
        return value

    def _check_key(self) -> None:
        try:
            ensure_not_revoked(self.pulse, self.principal)
        except Unauthenticated as exc:
            raise GraphQLError(str(exc), extensions={"code": "UNAUTHENTICATED"}) from exc

    async def stream(self, first: T) -> AsyncGenerator[T, None]:
        """``first``, then every change. Registers with the watcher only once iterated,
        so a stream closed before its first chunk leaves nothing behind."""
        # A stream writing its own socket may share its pushes with identical streams.
        subscriber = self.watcher.subscribe(self.keys, sink=current_sink(), arguments=self.arguments)
        try:
            last = first
            yield first
            while True:
                now = self._clock()
                # Also catches a change between the first value and subscribing.
                if not covers(self._token, self._token_at(now)):
                    value = self.current()
                    if not _same_shared(self._same, value, last):
                        last = value
                        yield value
                    continue
                until = self._slot(now)[1]
                timeout = REVALIDATE_SECONDS if until is None else min(until + _BOUNDARY_SLACK, REVALIDATE_SECONDS)
                await subscriber.changed(timeout)
                self._check_key()
        finally:
            self.watcher.unsubscribe(subscriber)


class _Sameness:
    """Whether two shared values are the same, decided once per pair for all subscribers.

    Identical subscribers hold the very same value objects (``ChangeWatcher.shared``), so
    after a recomputation each of them would compare the same new value with the same last
    one (for a 60-point series, 60 dataclass comparisons per subscriber per change). The
    pair's objects are kept with the answer, so an id cannot be reused while it is cached."""

    def __init__(self, max_entries: int) -> None:
        self._answers: OrderedDict[tuple[int, int], tuple[object, object, bool]] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def __call__(self, same: Callable[[T, T], bool], value: T, last: T) -> bool:
        if value is last:
            return True
        key = (id(value), id(last))
        with self._lock:
            cached = self._answers.get(key)
        if cached is not None and cached[0] is value and cached[1] is last:
            return cached[2]
        answer = same(value, last)
        with self._lock:
            self._answers[key] = (value, last, answer)
            if len(self._answers) > self._max_entries:
                self._answers.popitem(last=False)
        return answer


# One ``same`` per kind of value (a series compares its points), and the objects of one
# pair are always of one kind, so the pair alone is the key.
_same_shared = _Sameness(max_entries=256)

#: Rendered pushes, per operation text and variables: the latest value's result.
_renders = SharedResults(max_entries=1024)


class _Unshareable(Exception):
    """A rendering that did not complete synchronously (an async field): not shared."""


class SharedRenderExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Executes a subscription's selection set once per pushed value object for all
    subscribers with the same operation and variables (see the module docstring)."""

    def build_per_event_executor(self, payload: object) -> SharedRenderExecutionContext:
        executor = super().build_per_event_executor(payload)
        executor._pushed = payload  # type: ignore[attr-defined]
        # graphql-core's copy shares the subscription's memo of collected sub-fields, keyed
        # by field lists that are new on every push: shared, it kept every push's entries
        # for the stream's life (about 30 MB per 10 minutes per worker under 50 streams).
        executor._relevant_sub_fields = {}
        # The operation and variables are the subscription's: its key is built once, not per push.
        key = executor.__dict__["_render_key_value"] = self._render_key()
        sink = current_sink()
        if sink is not None and sink.render_key is None:  # streams group by what they render
            sink.render_key = key
        return executor  # type: ignore[return-value]

    def _render_key(self) -> tuple[str, str | None, str]:
        key = self.__dict__.get("_render_key_value")
        if key is None:
            operation = self.operation
            source = operation.loc.source.body if operation.loc is not None else print_ast(operation)
            name = operation.name.value if operation.name is not None else None
            variables = getattr(self.variable_values, "coerced", self.variable_values)
            key = self.__dict__["_render_key_value"] = (source, name, repr(sorted(variables.items())))
        return key

    def execute_operation(self, *args: object, **kwargs: object) -> object:
        payload = self.__dict__.get("_pushed", _renders)
        if payload is _renders:  # queries, mutations, the subscription's own resolver
            return super().execute_operation(*args, **kwargs)
        run = super().execute_operation
        produced: list[object] = []

        def render() -> object:
            result = run(*args, **kwargs)
            if not isinstance(result, GraphQLExecutionResult):
                produced.append(result)
                raise _Unshareable
            if result.data is not None:  # marked, so the HTTP layer encodes it once too
                result = GraphQLExecutionResult(SharedData(result.data), result.errors, result.extensions)
            return result

        try:
            result, _ = _renders.get(self._render_key(), id(payload), render, anchor=payload)
        except _Unshareable:
            return produced[0]
        return result


async def open_stream(live: LiveValue[T]) -> AsyncGenerator[T, None]:
    first = live.current()  # bad arguments fail here, as the stream's only payload
    return live.stream(first)


def live_series(
    pulse: Pulse,
    principal: Principal,
    metric: str,
    resolution: Resolution,
    filter: list[DimensionFilter] | None = None,
    last: int | None = None,
    clock: Clock | None = None,
) -> LiveValue[Series]:
    """``seriesUpdated``: the ``series`` query's answer, on the metric's change marker and
    the current bucket (the window slides with the clock)."""
    definition = guarded(lambda: pulse.metrics.resolve_metric(metric))
    bucketing = bucketing_of(pulse)

    def slot(now: float) -> tuple[int, float | None]:
        bucket = bucketing.floor(resolution.value, now)
        return bucket, bucketing.end(resolution.value, bucket) - now

    return LiveValue(
        pulse,
        principal,
        ("series", metric, resolution.value, tuple((f.dimension, f.value) for f in filter or ()), last),
        frozenset({metric_marker(definition.key)}),
        lambda now: series_of(pulse, principal, metric, resolution, last=last, filter=filter, now=now),
        slot,
        same=lambda a, b: a.points == b.points,
        clock=clock,
    )


def live_gauge(pulse: Pulse, principal: Principal, name: str, keys: list[str] | None = None) -> LiveValue:
    """``gaugeUpdated``: the ``gauges`` query's answer, on the gauge's change marker."""
    return LiveValue(
        pulse,
        principal,
        ("gauge", name, None if keys is None else tuple(keys)),
        frozenset({gauge_marker(name)}),
        lambda now: gauge_readings_of(pulse, principal, name, keys),
    )


def live_status(pulse: Pulse, principal: Principal, clock: Clock | None = None) -> LiveValue:
    """``projectionStatus``: the ``projections`` query's answer, on the checkpoints' marker
    and every ``STATUS_REFRESH_SECONDS``."""

    def slot(now: float) -> tuple[int, float | None]:
        return int(now // STATUS_REFRESH_SECONDS), STATUS_REFRESH_SECONDS - now % STATUS_REFRESH_SECONDS

    return LiveValue(
        pulse,
        principal,
        ("projections",),
        frozenset({PROJECTIONS_MARKER}),
        lambda now: projections_of(pulse, principal),
        slot,
        clock=clock,
    )


def _context(info: Info) -> tuple[Pulse, Principal]:
    principal = require_scope(info, "read")
    return info.context["pulse"], principal


@strawberry.type
class StreamToken:
    token: str = strawberry.field(description="Pass as ?token= on GET /graphql (EventSource); read scope only.")
    expires_at: datetime = strawberry.field(description="Open the stream before then; an open stream outlives it.")


@strawberry.type
class LiveSubscription:
    @strawberry.subscription(
        description="The `series` query, live: the current series, then again whenever its points change"
        " (new facts, late facts, the window sliding into a new bucket). Needs the read scope."
    )
    async def series_updated(
        self,
        info: Info,
        metric: str,
        resolution: Resolution,
        filter: list[DimensionFilter] | None = None,
        last: int | None = None,
    ) -> AsyncGenerator[Series, None]:
        pulse, principal = _context(info)
        return await open_stream(live_series(pulse, principal, metric, resolution, filter, last))

    @strawberry.subscription(
        description="The `gauges` query, live: the readings, then again whenever one changes. Needs read."
    )
    async def gauge_updated(
        self, info: Info, name: str, keys: list[str] | None = None
    ) -> AsyncGenerator[list[GaugeReading], None]:
        pulse, principal = _context(info)
        return await open_stream(live_gauge(pulse, principal, name, keys))

    @strawberry.subscription(
        description="The `projections` query, live: checkpoints, lag and throughput as workers move. Needs read."
    )
    async def projection_status(self, info: Info) -> AsyncGenerator[list[ProjectionStatus], None]:
        pulse, principal = _context(info)
        return await open_stream(live_status(pulse, principal))


@strawberry.type
class LiveMutation:
    @strawberry.mutation(
        description="A token for browsers' EventSource, which cannot send headers: GET /graphql?query=...&token=..."
        " It grants read only, for 5 minutes, and stops working when the key is revoked. Needs read."
    )
    def create_stream_token(self, info: Info) -> StreamToken:
        pulse, principal = _context(info)
        if pulse.settings.auth and principal.key_id is None:
            # A stream token stands for an API key (checked for revocation when a stream opens);
            # one issued to a signed-in user would name no key and every stream would refuse it.
            raise GraphQLError(
                f"stream tokens stand for an API key; {principal.who} signed in with a sign-in token:"
                " send it as 'Authorization: Bearer <token>' on a fetch-based stream (graphql-sse) instead",
                extensions={"code": "FORBIDDEN"},
            )
        token, expires_at = guarded(lambda: stream_tokens.issue(pulse, principal.key_id))
        return StreamToken(token=token, expires_at=expires_at)


__all__ = ["LiveMutation", "LiveSubscription", "SharedRenderExecutionContext", "live_watcher"]
