"""A backfill on DynamoDB (a metric defined or changed after events exist, rebuilt by
``workers.dynamodb_rebuild.run_pending_rebuild``) shown in the replay ledger as a replay
of the counters with its progress, so ``projections`` says REPLAYING instead of the
metric reading a silent zero for minutes."""

from __future__ import annotations

import logging

from domain.clock import SYSTEM_CLOCK, Clock
from domain.replay import LEASE_SECONDS, REQUESTED, ReplayLedger
from projections.counters import PROJECTION
from services.engine import RateMeter

log = logging.getLogger(__name__)


class BackfillProgress:
    """Shows a backfill (a metric defined or changed after events exist) in the replay
    ledger as a replay of the counters, with progress, instead of a silent zero. Best
    effort: it never holds the backfill up, and leaves a requested replay alone."""

    def __init__(
        self, ledger: ReplayLedger, owner: str, lease_seconds: float = LEASE_SECONDS, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.rate = RateMeter()
        self.done = 0
        self.total = 0
        self.active = False

    def start(self, total: int) -> None:
        self.total = total
        try:
            current = self.ledger.replays().get(PROJECTION)
            if current is not None and current.state == REQUESTED:
                return
            self.ledger.claim(PROJECTION, self.owner, self.clock.now(), self.lease_seconds, total)
            self.active = True
        except Exception as exc:  # status only
            log.info("backfill progress not recorded: %s", exc)

    def advance(self, read: int) -> None:
        if not self.active:
            return
        self.done += read
        self.total = max(self.total, self.done)
        try:
            self.ledger.renew(
                PROJECTION, self.owner, self.clock.now(), self.lease_seconds, self.done, self.total, self.rate.add(read)
            )
        except Exception as exc:
            self.active = False
            log.info("backfill progress not recorded: %s", exc)

    def finish(self) -> None:
        if self.active:
            self.ledger.finish(PROJECTION, self.owner)

    def failed(self, exc: BaseException) -> None:
        if self.active:
            self.ledger.fail(PROJECTION, self.owner, str(exc) or type(exc).__name__, self.clock.now())
