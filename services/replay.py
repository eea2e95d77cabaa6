"""Replays: rebuild a read model from the event store into a new generation while the
current one serves, then switch (``pulse replay``, ``replayProjection``).

``PositionedReplayer`` runs a replay on a log with one global order (the embedded store):

1. claim the projection in the ledger (a lease with an expiry, renewed at every page;
   ``ReplayRunning`` when another live process holds it);
2. open the projection's new generation (``Generations.open``): the same handler as live
   projection, writing into a store of its own, resumed where a killed replay left it;
3. feed it the log page by page as ``FeedBatch(replay=True)`` (projections with side
   effects must not notify for these), each page committed with the generation's
   checkpoint, renewing the lease and reporting progress;
4. ``Generation.switch``: one short write transaction on the live store applies what the
   live worker added since, swaps the generations and moves the change markers; then the
   old one is dropped and the ledger says LIVE again.

An event the projection raises on is retried, then parked, as in live processing
(``services.replay_parking``); the replay goes on. Any other failure leaves the serving
generation untouched and the ledger says FAILED with the
error; the next run resumes the new generation from its last page.

``ReplayService`` is what GraphQL calls: it records a request in the ledger (the server
never runs a replay in a request); the worker process picks requests up
(``workers.replay_requests``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from domain.access import Principal, require
from domain.clock import Clock
from domain.errors import FieldError, PulseError, ValidationError
from domain.ports import Checkpoint, PositionedLog
from domain.replay import LEASE_SECONDS, ReplayLedger, ReplayStatus
from services.engine import FeedBatch, ProjectionHandler, RateMeter
from services.gc_pause import collection_paused
from services.replay_parking import ReplayParking

log = logging.getLogger(__name__)

PAGE_SIZE = 5000


class Generation(Protocol):
    """A read model's new generation, filled by a replay while the old one serves."""

    def position(self) -> int:
        """The last log position it holds (0: empty)."""

    def switch(self, catch_up: Callable[[int], None]) -> Checkpoint:
        """Make it the serving generation in one step; ``catch_up(position)`` first brings it
        to the live checkpoint's ``position``."""

    def drop(self) -> None:
        """Delete it."""


class Generations(Protocol):
    def replayable(self) -> list[str]:
        """The projections this backend can replay."""

    def open(self, projection: str, fresh: bool = False) -> Generation:
        """The new generation of ``projection``, resumed unless ``fresh``."""


class ReplayLog(PositionedLog, Protocol):
    def read_facts(self, cursor: str | None = None, limit: int = 1000): ...


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    projection: str
    done: int
    total: int
    events_per_second: float


@dataclass(frozen=True, slots=True)
class ReplayResult:
    projection: str
    #: The read model's checkpoint after the switch (on DynamoDB, where checkpoints are per
    #: shard and not rebuilt, the projection's checkpoint of no shard).
    checkpoint: Checkpoint
    pages: int
    #: Facts the replay read.
    events: int = 0


class ReplayUnsupported(PulseError):
    """This backend cannot replay that projection."""


def replay_owner() -> str:
    """Who holds a lease: host, process and a random tag (a pid alone is reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class PositionedReplayer:
    """Runs replays on a positioned log; see the module docstring."""

    def __init__(
        self,
        events: ReplayLog,
        ledger: ReplayLedger,
        generations: Generations,
        handler_for: Callable[[str, Generation], ProjectionHandler],
        clock: Clock,
        page_size: int = PAGE_SIZE,
        lease_seconds: float = LEASE_SECONDS,
        parking: ReplayParking | None = None,
    ) -> None:
        self.events = events
        #: Poison events are parked as in live processing (None: they fail the replay).
        self.parking = parking
        self.ledger = ledger
        self.generations = generations
        self.handler_for = handler_for
        self.clock = clock
        self.page_size = page_size
        self.lease_seconds = lease_seconds

    def replayable(self) -> list[str]:
        return self.generations.replayable()

    def replay(
        self,
        projection: str,
        on_progress: Callable[[ReplayProgress], None] | None = None,
        fresh: bool = False,
        stop: threading.Event | None = None,
        owner: str | None = None,
    ) -> ReplayResult:
        """Replay ``projection`` to the end of the log and switch; ``ReplayRunning`` when
        another process holds it, ``ReplayUnsupported`` when it cannot be replayed."""
        if projection not in self.replayable():
            raise ReplayUnsupported(
                f"{projection!r} cannot be replayed here; one of {', '.join(self.replayable()) or 'none'}"
            )
        owner = owner or replay_owner()
        total = self.events.last_position()
        self.ledger.claim(projection, owner, self.clock.now(), self.lease_seconds, total)
        try:
            generation = self.generations.open(projection, fresh=fresh)
            handler = self.handler_for(projection, generation)
            rate = RateMeter()
            pages = 0
            events = 0
            while True:
                if stop is not None and stop.is_set():
                    raise InterruptedError("the worker is stopping; run the replay again to resume it")
                read, _ = self._step(handler, None)
                events += read
                total = max(self.events.last_position(), total)
                done = handler.position("")
                speed = rate.add(read)
                self.ledger.renew(projection, owner, self.clock.now(), self.lease_seconds, done, total, speed)
                if on_progress is not None:
                    on_progress(ReplayProgress(projection, done, total, speed))
                pages += 1
                if read < self.page_size:
                    break  # at the head: the switch's catch-up takes what comes after

            def catch_up(target: int) -> None:
                while handler.position("") < target:
                    if not self._step(handler, target)[1]:
                        raise RuntimeError(f"the new generation of {projection} does not move past {target}")

            checkpoint = generation.switch(catch_up)
            generation.drop()
        except BaseException as exc:
            reason = str(exc) or type(exc).__name__
            log.warning("replay of %s stopped: %s", projection, reason)
            self.ledger.fail(projection, owner, reason, self.clock.now())
            raise
        self.ledger.finish(projection, owner)
        return ReplayResult(projection, checkpoint, pages, events)

    def _step(self, handler: ProjectionHandler, upto: int | None) -> tuple[int, bool]:
        """Feed ``handler`` one page of the log past its checkpoint (to ``upto`` at most):
        how many facts it read, and whether its checkpoint moved."""
        with collection_paused():  # services/gc_pause.py
            return self._feed(handler, upto)

    def _feed(self, handler: ProjectionHandler, upto: int | None) -> tuple[int, bool]:
        handler.prepare()
        position = handler.position("")
        head = self.events.last_position() if upto is None else upto
        if head <= position:
            return 0, False
        page = self.events.read_facts(str(position) if position else None, limit=self.page_size)
        facts = [event for event in page.events if (event.position or 0) <= head]
        # A full page that stops short of the head ends at its last fact; otherwise the
        # page holds every fact up to the head, and the batch moves the checkpoint there.
        full = len(page.events) >= self.page_size and len(facts) == len(page.events)
        end = (facts[-1].position or head) if full else head
        batch = FeedBatch("", position + 1, end, facts, replay=True)
        if self.parking is None:
            handler.handle(batch)
        else:
            self.parking.handle(handler, batch)
        handler.flush()
        return len(facts), handler.position("") > position


class ReplayService:
    """What GraphQL asks of replays: requests (admin). Their status is part of the
    projections' (``MetricsService.projections``)."""

    def __init__(self, ledger: ReplayLedger, replayable: list[str], clock: Clock) -> None:
        self.ledger = ledger
        self.replayable = replayable
        self.clock = clock

    def request(self, principal: Principal, projection: str) -> ReplayStatus:
        """Record a replay request for the worker; ``ReplayRunning`` when one is held."""
        require(principal, "admin")
        if projection not in self.replayable:
            choices = ", ".join(self.replayable) or "none on this store"
            reason = f"unknown or not replayable projection {projection!r}; one of {choices}"
            raise ValidationError([FieldError("name", reason)])
        return self.ledger.request(projection, self.clock.now())
