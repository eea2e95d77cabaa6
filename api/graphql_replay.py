"""GraphQL for replays: the ``replayProjection`` mutation (admin) and the replay fields of
``projections`` / ``projectionStatus`` (``state``, ``progress``, ``eta``...).

The mutation only records the request (``services.replay.ReplayService``): the projection
worker runs it in a background thread (``workers.replays``), so no request waits for a
replay. A replay of the same projection already requested or running is refused with
``extensions.code = "CONFLICT"``; an unknown name with ``BAD_USER_INPUT``.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from graphql import GraphQLError
from strawberry.types import Info

from api.auth import caller
from domain.micros import from_epoch_micros
from domain.replay import LIVE, ReplayRunning, ReplayStatus


@strawberry.enum(description="Whether a read model serves its live generation or is being replayed.")
class ProjectionState(Enum):
    LIVE = "LIVE"
    REQUESTED = "REQUESTED"
    REPLAYING = "REPLAYING"
    FAILED = "FAILED"


@strawberry.type
class ReplayRequest:
    name: str
    state: ProjectionState
    requested_at: datetime | None


def replay_fields(status: ReplayStatus | None, now: float) -> dict[str, object]:
    """The ``ProjectionStatus`` fields of a projection's replay (``status``; None: live)."""
    if status is None:
        return {"state": ProjectionState.LIVE}
    eta = status.eta_seconds
    return {
        "state": ProjectionState(status.state),
        "progress": status.progress,
        "replay_done": status.done,
        "replay_total": status.total,
        "eta_seconds": eta,
        "eta": None if eta is None else from_epoch_micros(int((now + eta) * 1e6)),
        "replay_error": status.error,
    }


def _moment(seconds: float | None) -> datetime | None:
    return None if seconds is None else from_epoch_micros(int(seconds * 1e6))


@strawberry.type
class ReplayMutation:
    @strawberry.mutation(
        description="Rebuild a read model (a name from `projections`, e.g. metrics) from the event store into a"
        " new generation while the current one serves, then switch; the projection worker runs it, and"
        " `projections` shows its progress. CONFLICT when one is requested or running already. Needs admin."
    )
    def replay_projection(self, info: Info, name: str) -> ReplayRequest:
        from api.graphql_metrics import guarded

        pulse, principal = caller(info)

        def run() -> ReplayStatus:
            try:
                return pulse.replays.request(principal, name)
            except ReplayRunning as exc:
                raise GraphQLError(str(exc), extensions={"code": "CONFLICT"}) from exc

        status = guarded(run)
        return ReplayRequest(name=name, state=ProjectionState(status.state), requested_at=_moment(status.requested_at))


__all__ = ["LIVE", "ProjectionState", "ReplayMutation", "replay_fields"]
