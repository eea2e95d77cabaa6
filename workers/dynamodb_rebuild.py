"""Rebuilding metrics and gauges defined after events exist, on DynamoDB: the poller's
background task (``rebuild_task``) and the Lambda handler both run ``run_pending_rebuild``.

Rebuilds (a metric defined after events exist, updated or deleted), exactly once
---------------------------------------------------------------------------------
``run_pending_rebuild`` registers a rebuild with a fence F = now + ``fence_seconds``,
waits until F + ``settle_seconds``, reads every fact from the event store
(``read_facts``), counts those received before F into the new generation, and switches.
Live batches count the facts received at or after F into it, from registration on and
for ever after (the fence stays with the generation, so a shard that lags behind the
switch does not count an early fact twice). Each fact is thus counted once, given:

- clock skew between the API servers that stamp ``receivedAt`` and the rebuilding
  process is below ``fence_seconds`` (30 s; NTP keeps AWS hosts within milliseconds):
  a fact stamped at or after F was written after the registration, so the batch
  carrying it reads a state that has the rebuild (step 2 reads after the fetch);
- a fact is stored within ``settle_seconds`` (120 s) of being stamped: ingest gives up
  after 30 s per call, so by F + settle every fact received before F is in the table
  when the scan reads it.

Built-in counts are never rebuilt. Registration is a conditional write with a lease,
so one process rebuilds at a time; a crashed rebuild is abandoned (its items become
garbage) and the next attempt starts a fresh generation with a fresh fence.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from domain.micros import now_micros
from domain.ports import EventStore
from domain.replay import ReplayLedger
from projections.buckets import Bucketing
from projections.counters import MetricsProjection
from services.counters import Rebuilt
from storage.dynamodb_generations import GenerationWriter
from storage.dynamodb_views import DynamoViewStore
from workers.backfill_progress import BackfillProgress
from workers.stream_projector import DefinitionsHistory, StreamProjector

log = logging.getLogger(__name__)

FENCE_SECONDS = 30.0
SETTLE_SECONDS = 120.0
REBUILD_PAGE = 1000
REBUILD_CHECK_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RebuildTiming:
    fence_seconds: float = FENCE_SECONDS
    settle_seconds: float = SETTLE_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: float | None) -> RebuildTiming:
        """From ``PULSE_REBUILD_FENCE_SECONDS`` / ``PULSE_REBUILD_SETTLE_SECONDS``, then overrides."""
        values = {
            "fence_seconds": float(env.get("PULSE_REBUILD_FENCE_SECONDS") or FENCE_SECONDS),
            "settle_seconds": float(env.get("PULSE_REBUILD_SETTLE_SECONDS") or SETTLE_SECONDS),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["fence_seconds"] < 0 or values["settle_seconds"] < 0:
            raise ValueError("rebuild fence and settle seconds must be 0 or more")
        return cls(**values)


def rebuild_task(
    projector: StreamProjector,
    timing: RebuildTiming,
    owner: str,
    check_seconds: float = REBUILD_CHECK_SECONDS,
    ledger: ReplayLedger | None = None,
) -> Callable[[threading.Event, threading.Event], None]:
    """The poller's background task: run pending rebuilds, every ``check_seconds`` and
    whenever the stream carried a change of the definitions."""

    def task(stop: threading.Event, definitions_seen: threading.Event) -> None:
        while not stop.is_set():
            try:
                run_pending_rebuild(
                    projector.events,
                    projector.views,
                    projector.bucketing,
                    projector.history,
                    owner,
                    timing,
                    stop,
                    progress=None if ledger is None else BackfillProgress(ledger, owner),
                )
            except Exception:
                if stop.is_set():
                    return
                log.exception("rebuild failed; retrying in %.0f s", check_seconds)
            deadline = time.monotonic() + check_seconds
            while not stop.is_set() and not definitions_seen.is_set() and time.monotonic() < deadline:
                stop.wait(0.2)
            definitions_seen.clear()

    return task


class RebuildInterrupted(Exception):
    """The worker is stopping, or the time given ran out: the rebuild was abandoned."""


def _wait(seconds: float, stop: threading.Event | None) -> None:
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise RebuildInterrupted("stopping")


def run_pending_rebuild(
    events: EventStore,
    views: DynamoViewStore,
    bucketing: Bucketing,
    history: DefinitionsHistory,
    owner: str | None = None,
    timing: RebuildTiming | None = None,
    stop: threading.Event | None = None,
    page_size: int = REBUILD_PAGE,
    deadline: float | None = None,
    progress: BackfillProgress | None = None,
) -> Rebuilt | None:
    """Bring the views to the latest definitions: rebuild what changed since the version
    they reflect into a new generation and switch.

    Returns None when there is nothing to do, another process's rebuild is running, or
    (with a ``deadline``, a ``time.time()`` by which to return, as a Lambda has) the
    fence has not settled yet: the rebuild stays registered under ``owner`` and the next
    call by the same owner carries on. A scan that cannot finish by the deadline is
    abandoned (``RebuildInterrupted``); a longer-lived process must do it.
    """
    timing = timing or RebuildTiming()
    owner = owner or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    history.refresh()
    state = views.definitions_state()
    target = history.latest_version
    build = state.build
    now = now_micros()
    if build is not None and build.owner != owner and build.lease > now:
        return None  # someone else's, alive
    if build is None or build.owner != owner or build.version != target:
        if target <= state.version:
            return None
        metrics, gauges = history.at(target).changed_since(state.version)
        build = views.begin_build(target, metrics, gauges, owner, timing.fence_seconds)
        log.info(
            "rebuilding metrics %s and gauges %s for definitions version %d into generation %d",
            list(build.metrics),
            list(build.gauges),
            target,
            build.gen,
        )
    writer = GenerationWriter(views, build)
    ready = build.fence / 1e6 + timing.settle_seconds
    if deadline is not None and ready > deadline:
        writer.renew(until=ready + 60)
        log.info("rebuild into generation %d starts its scan after %.0f s", build.gen, ready - time.time())
        return None
    if progress is not None:
        progress.start(sum(views.event_types().values()))
    try:
        while (left := ready - time.time()) > 0:
            writer.renew()
            _wait(min(left, 5.0), stop)
        catalog = history.at(build.version)
        only = MetricsProjection(
            [catalog.metrics[name] for name in build.metrics if name in catalog.metrics],
            [catalog.gauges[name] for name in build.gauges if name in catalog.gauges],
            bucketing,
            builtins=False,
        )
        facts = 0
        cursor = None
        while True:
            if stop is not None and stop.is_set():
                raise RebuildInterrupted("stopping")
            if deadline is not None and time.time() > deadline:
                raise RebuildInterrupted(
                    f"the scan of the facts did not finish in the time given (at {facts} facts): run the"
                    " rebuild where it may take longer (`pulse worker --store dynamodb`, or a longer Lambda timeout)"
                )
            page = events.read_facts(cursor, limit=page_size)
            if not page.events:
                break
            counted = [fact for fact in page.events if writer.includes(fact)]
            if counted:
                facts += len(counted)
                writer(only.project(counted))
            else:
                writer.renew()
            if progress is not None:
                progress.advance(len(page.events))
            cursor = page.cursor
        views.finish_build(writer.build)
    except BaseException as exc:
        views.abandon_build(writer.build)
        if progress is not None:
            progress.failed(exc)
        raise
    if progress is not None:
        progress.finish()
    deleted = views.collect_garbage()
    log.info(
        "rebuilt %s from %d facts (definitions version %d); %d replaced items deleted",
        list(build.names),
        facts,
        build.version,
        deleted,
    )
    return Rebuilt(list(build.metrics), list(build.gauges), facts, build.version)
