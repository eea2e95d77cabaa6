"""The replay ledger's in-memory fake (tests): the same rules as the SQLite ledger."""

from __future__ import annotations

import threading
from dataclasses import replace

from domain.replay import FAILED, REPLAYING, REQUESTED, ReplayLost, ReplayRunning, ReplayStatus, claim_of


class MemoryReplayLedger:
    """``ReplayLedger`` in a dict; one lock stands for the store's write transaction."""

    def __init__(self) -> None:
        self._rows: dict[str, ReplayStatus] = {}
        self._lock = threading.Lock()

    def replays(self) -> dict[str, ReplayStatus]:
        with self._lock:
            return dict(sorted(self._rows.items()))

    def request(self, projection: str, now: float) -> ReplayStatus:
        with self._lock:
            current = self._rows.get(projection)
            if current is not None and current.held(now):
                raise ReplayRunning(current)
            status = self._rows[projection] = ReplayStatus(projection, REQUESTED, requested_at=now, updated_at=now)
            return status

    def claim(self, projection: str, owner: str, now: float, lease_seconds: float, total: int) -> ReplayStatus:
        with self._lock:
            status = claim_of(self._rows.get(projection), projection, owner, now, lease_seconds, total)
            self._rows[projection] = status
            return status

    def renew(
        self, projection: str, owner: str, now: float, lease_seconds: float, done: int, total: int, rate: float
    ) -> None:
        with self._lock:
            current = self._rows.get(projection)
            if current is None or current.owner != owner or current.state != REPLAYING:
                raise ReplayLost(f"the replay of {projection} was taken over by another process")
            self._rows[projection] = replace(
                current, lease_until=now + lease_seconds, done=done, total=total, events_per_second=rate, updated_at=now
            )

    def finish(self, projection: str, owner: str) -> None:
        with self._lock:
            current = self._rows.get(projection)
            if current is not None and current.owner == owner:
                del self._rows[projection]

    def fail(self, projection: str, owner: str, error: str, now: float) -> None:
        with self._lock:
            current = self._rows.get(projection)
            if current is not None and current.owner == owner:
                self._rows[projection] = replace(current, state=FAILED, error=error, lease_until=0.0, updated_at=now)
