"""Parked events as operators handle them (`pulse parked`, GraphQL ``parkedEvents`` and
``retryParked``): list, retry exactly once, drop; scopes checked here.

Listing needs ``read`` (an operator's dashboard shows what is stuck, and a parked record
holds only what ``recentEvents`` already shows a reader); retrying and dropping change the
read models, so they need ``admin``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from domain.access import Principal, require
from domain.errors import FieldError, NotFound, StoreUnavailable, ValidationError
from domain.parked import ParkedEvent, ParkedEvents, retry_partition
from domain.ports import CheckpointConflict
from domain.replay import ReplayLedger
from services.engine import FeedBatch, ProjectionHandler

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    """``applied``: the event is in the read model now (by this retry, or by one before it
    whose record deletion was lost); else ``still_parked`` is the record, attempts + 1."""

    applied: bool
    still_parked: ParkedEvent | None = None
    error: str | None = None


class ParkedService:
    def __init__(
        self, parked: ParkedEvents, handlers: Sequence[ProjectionHandler], replays: ReplayLedger | None = None
    ) -> None:
        self.parked = parked
        self.handlers = {handler.name: handler for handler in handlers}
        #: A retry waits for a replay of its projection to switch (it would miss the new generation).
        self.replays = replays

    def list(self, principal: Principal, projection: str | None = None) -> list[ParkedEvent]:
        require(principal, "read")
        return self.parked.list(projection)

    def counts(self, principal: Principal) -> dict[str, int]:
        require(principal, "read")
        return self.parked.counts()

    def _record(self, projection: str, event_id: str) -> ParkedEvent:
        found = self.parked.get(projection, event_id)
        if found is None:
            raise NotFound(f"no event {event_id!r} is parked by projection {projection!r}")
        return found

    def drop(self, principal: Principal, projection: str, event_id: str) -> ParkedEvent:
        """Forget a parked event: the read model will never count it (a replay would)."""
        require(principal, "admin")
        found = self._record(projection, event_id)
        self.parked.drop(projection, event_id)
        log.warning("dropped parked event %s of projection %s", event_id, projection)
        return found

    def retry(self, principal: Principal, projection: str, event_id: str) -> RetryOutcome:
        """Apply the parked event to its projection once more, exactly once whoever else
        retries it (its retry partition's checkpoint moves with the changes)."""
        require(principal, "admin")
        found = self._record(projection, event_id)
        replaying = None if self.replays is None else self.replays.replays().get(projection)
        if replaying is not None and replaying.held(time.time()):
            reason = f"a replay of {projection!r} is running: retry the event once it has switched"
            raise ValidationError([FieldError("projection", reason)])
        handler = self.handlers.get(projection)
        if handler is None or not getattr(handler, "retries_parked", False):
            reason = "is not running here" if handler is None else "cannot retry parked events on this backend"
            hint = "drop the event or replay the projection"
            raise ValidationError([FieldError("projection", f"projection {projection!r} {reason}; {hint}")])
        event = found.event
        position = event.position or 1
        try:
            self._apply(handler, FeedBatch(retry_partition(event.id), position, position, [event]))
        except StoreUnavailable:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            again = ParkedEvent(found.projection, found.partition, event, error, 1, found.first_failure, time.time())
            self.parked.park(again)
            log.warning("retry of parked event %s of projection %s failed again: %s", event.id, projection, error)
            return RetryOutcome(False, self.parked.get(projection, event_id), error)
        finally:
            handler.forget()
        self.parked.drop(projection, event_id)  # lost in a crash: the next retry finds it applied
        log.info("parked event %s of projection %s applied on retry", event.id, projection)
        return RetryOutcome(True)

    @staticmethod
    def _apply(handler: ProjectionHandler, batch: FeedBatch, tries: int = 3) -> None:
        """Hand the retry batch to ``handler``; a racing retry of the same event moves the
        same checkpoint, so after a conflict the next try finds it applied (a no-op)."""
        for attempt in range(tries):
            try:
                handler.prepare()
                handler.handle(batch)
                return
            except CheckpointConflict as exc:
                handler.forget()
                if attempt == tries - 1:
                    raise StoreUnavailable(
                        f"another process keeps moving the checkpoint; retry shortly: {exc}"
                    ) from exc
