"""Replays: a read model rebuilt from the event store into a new generation while the
current one keeps serving, then switched to. Pure: what a replay's status is, the error
of a second replay, and the ledger port that records requests, leases and progress.

A replay is owned by one process at a time through a lease with an expiry (a row or an
item, not a pid file, so it holds across processes and machines): the owner renews it at
every page, and a replay whose owner died (``kill -9``) can be taken over once the lease
has run out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from domain.errors import PulseError

#: A replay asked for (``replayProjection``), waiting for a worker to pick it up.
REQUESTED = "REQUESTED"
#: A replay running: ``done`` of ``total`` events read into the new generation.
REPLAYING = "REPLAYING"
#: The last replay failed (``error`` says why); the serving generation is untouched.
FAILED = "FAILED"
#: No replay: the projection serves its live generation.
LIVE = "LIVE"

LEASE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class ReplayStatus:
    """One projection's replay as its ledger records it."""

    projection: str
    state: str
    owner: str | None = None
    #: Epoch seconds after which another process may take the replay over.
    lease_until: float = 0.0
    done: int = 0
    total: int = 0
    events_per_second: float = 0.0
    requested_at: float | None = None
    started_at: float | None = None
    updated_at: float | None = None
    error: str | None = None

    @property
    def progress(self) -> float | None:
        """0..1 while replaying (None before the total is known)."""
        if self.state != REPLAYING or self.total <= 0:
            return None
        return min(self.done / self.total, 1.0)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the current rate (None until there is a rate)."""
        if self.state != REPLAYING or self.events_per_second <= 0:
            return None
        return max(self.total - self.done, 0) / self.events_per_second

    def as_of(self, now: float) -> ReplayStatus:
        """What to report at ``now``: a replay whose lease ran out without a switch lost its
        process (killed, or its machine gone), so it is FAILED until someone runs it again."""
        if self.state == REPLAYING and self.lease_until <= now:
            error = "the process running the replay stopped (its lease ran out): run it again"
            return replace(self, state=FAILED, error=error)
        return self

    def held(self, now: float) -> bool:
        """Whether a live owner holds it (a requested replay is held until a worker claims it)."""
        if self.state == REQUESTED:
            return True
        return self.state == REPLAYING and self.lease_until > now


class ReplayRunning(PulseError):
    """A replay of the projection is running (or requested) already."""

    def __init__(self, status: ReplayStatus) -> None:
        self.status = status
        who = f" by {status.owner}" if status.owner else ""
        if status.state == REQUESTED:
            detail = "was requested and waits for a worker"
        else:
            detail = f"is running{who} ({status.done}/{status.total} events)"
        super().__init__(f"a replay of {status.projection} {detail}; wait for it to finish")


def claim_of(
    current: ReplayStatus | None, projection: str, owner: str, now: float, lease_seconds: float, total: int
) -> ReplayStatus:
    """What a ledger writes when ``owner`` claims the replay of ``projection`` (it was
    ``current``): raises ``ReplayRunning`` while another owner's lease on it runs."""
    if current is not None and current.state == REPLAYING and current.owner != owner and current.lease_until > now:
        raise ReplayRunning(current)
    return ReplayStatus(
        projection,
        REPLAYING,
        owner=owner,
        lease_until=now + lease_seconds,
        total=total,
        requested_at=None if current is None else current.requested_at,
        started_at=now,
        updated_at=now,
    )


class ReplayLost(PulseError):
    """The replay's lease was taken over by another process (this one was too slow)."""


class ReplayLedger(Protocol):
    """Where replays are requested, claimed, renewed and finished (the views store)."""

    def replays(self) -> dict[str, ReplayStatus]:
        """Every projection with a replay requested, running, or failed last."""

    def request(self, projection: str, now: float) -> ReplayStatus:
        """Ask a worker to replay ``projection``; ``ReplayRunning`` when one is held."""

    def claim(self, projection: str, owner: str, now: float, lease_seconds: float, total: int) -> ReplayStatus:
        """Start (or take over, or pick up the request of) a replay as ``owner``;
        ``ReplayRunning`` when another owner holds an unexpired lease."""

    def renew(
        self, projection: str, owner: str, now: float, lease_seconds: float, done: int, total: int, rate: float
    ) -> None:
        """Record progress and extend the lease; ``ReplayLost`` when it was taken over."""

    def finish(self, projection: str, owner: str) -> None:
        """The replay switched: the projection is live again."""

    def fail(self, projection: str, owner: str, error: str, now: float) -> None:
        """The replay stopped on ``error``; the serving generation is untouched."""
