"""Projection rigs: an event store, a view store and a way to run the backend's worker.

Every test here takes ``make_rig`` and runs once per backend in ``BACKENDS``: "sqlite"
(the embedded store and its log tail), "dynamodb" (fresh DynamoDB Local tables fed through
the real Streams poller) and "memory" (the in-memory fake, ``bootstrap.memory``, with the
log tail). A rig provides ``events`` (EventStore), ``views`` (ViewStore) and:

- ``catch_up(batch_size, retention=KEEP_ALL, clock=SYSTEM_CLOCK)``: run the backend's
  worker in-process, fresh as after a restart, until every stored fact is projected (on
  DynamoDB the poller, then any pending rebuild of the counters, as the worker's background
  thread would); it writes no cell older than ``retention`` at ``clock``'s now (none by
  default: the oracle recomputes every cell);
- ``next_batch(limit)`` and ``deliver(batch)``: the records a driver would read next for the
  counters read model, and handing them to it; delivering one twice is a redelivery.
  ``deliver`` is True when it committed anything;
- ``definitions_version()``: the version of the metric definitions the views reflect;
- ``worker_command()``: the argv of its worker as a real process, with ``env`` (the
  kill -9 test); None on the fake, whose data lives in the test's process.

A test that cannot run on a backend says why with ``@not_on(backend, reason=...)``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from bootstrap import WorkerOptions, bootstrap, drop_tables
from domain.clock import SYSTEM_CLOCK, Clock
from domain.ports import EventStore, ViewStore
from domain.settings import Settings
from projections.buckets import Bucketing, Retention
from projections.counters import PROJECTION
from services.counters import ProjectionRunner
from services.engine import FeedBatch, ProjectionEngine
from storage.dynamodb_base import make_client
from storage.dynamodb_recent import DynamoRecentEvents
from tests.dynamodb_projections.conftest import KEEP_ALL, QUICK, open_rig
from workers.dynamodb_poller import READ_LIMIT, feed_batch
from workers.log_tail import LogTail
from workers.stream_projector import StreamProjector

ROOT = Path(__file__).resolve().parents[2]


T = TypeVar("T", bound=Callable[..., object])


def not_on(*backends: str, reason: str) -> Callable[[T], T]:
    """Marks a test that cannot run on ``backends``: ``make_rig`` skips it there, saying why.
    (A plain attribute, not a pytest mark: modules of other directories import these tests.)"""

    def mark(test: T) -> T:
        test.not_on = {**getattr(test, "not_on", {}), **dict.fromkeys(backends, reason)}  # type: ignore[attr-defined]
        return test

    return mark


class ProjectionRig:
    backend: str
    settings: Settings
    events: EventStore
    views: ViewStore
    env: dict[str, str]

    @property
    def timezone(self) -> str:
        return self.settings.timezone

    def catch_up(self, batch_size: int, retention: Retention = KEEP_ALL, clock: Clock = SYSTEM_CLOCK) -> int:
        raise NotImplementedError

    def next_batch(self, limit: int) -> FeedBatch:
        raise NotImplementedError

    def deliver(self, batch: FeedBatch) -> bool:
        raise NotImplementedError

    def definitions_version(self) -> int:
        raise NotImplementedError

    def worker_command(self) -> list[str] | None:
        return None

    def close(self) -> None:
        raise NotImplementedError


def log_tail(
    rig: PositionedRig,
    retention: Retention | None = None,
    batch_size: int = 5000,
    idle_seconds: float = 0.02,
    clock: Clock = SYSTEM_CLOCK,
) -> LogTail:
    """A worker as `pulse worker` builds it on a positioned log (counters and recent events)."""
    backend = rig.pulse.backend
    options = WorkerOptions(retention=retention or Retention(), batch_size=batch_size, clock=clock)
    engine = ProjectionEngine(backend.handlers(options))
    return LogTail(backend.events, engine, batch_size=batch_size, idle_seconds=idle_seconds, clock=clock)  # type: ignore[arg-type]


class PositionedRig(ProjectionRig):
    """A backend with one global order of facts, opened through ``bootstrap``: SQLite, memory."""

    def __init__(self, settings: Settings, env: dict[str, str]) -> None:
        self.backend = settings.store
        self.settings = settings
        self.env = env
        self.pulse = bootstrap(settings, create=True)
        self.pulse.worker(WorkerOptions())  # what a worker does on start (e.g. the time-zone check)
        self.events = self.pulse.store
        self.views = self.pulse.views
        self._runner: ProjectionRunner | None = None

    def catch_up(self, batch_size: int, retention: Retention = KEEP_ALL, clock: Clock = SYSTEM_CLOCK) -> int:
        # A fresh worker each time, as after a restart: it must resume from the stored checkpoint.
        return log_tail(self, retention, batch_size=batch_size, clock=clock).catch_up()

    def next_batch(self, limit: int) -> FeedBatch:
        position = self.views.checkpoint(PROJECTION).position
        page = self.events.read_facts(str(position) if position else None, limit=limit)
        upto = page.events[-1].position if page.events else position
        assert upto is not None
        return FeedBatch("", position + 1, upto, page.events)

    def deliver(self, batch: FeedBatch) -> bool:
        if self._runner is None:
            self._runner = ProjectionRunner(self.events, self.views, Bucketing(self.timezone))  # type: ignore[arg-type]
        self._runner.refresh_definitions()
        return self._runner.process(batch.events, after=batch.first - 1, upto=batch.upto)

    def definitions_version(self) -> int:
        return self.views.checkpoint(PROJECTION).definitions_version

    def worker_command(self) -> list[str] | None:
        if self.backend != "sqlite":
            return None
        return [sys.executable, "-m", "cli", "worker", "--db", self.settings.db, "--batch-size", "400"]

    def close(self) -> None:
        self.pulse.close()
        if self.backend == "memory":
            drop_tables(self.settings)


class DynamoProjectionRig(ProjectionRig):
    """DynamoDB Local tables, fed through the real Streams poller (one shard: a fresh table's)."""

    backend = "dynamodb"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rig = open_rig(settings)
        self.events = self.rig.events
        self.views = self.rig.views
        self._client = make_client(settings)
        self.recent = DynamoRecentEvents(self._client, self.rig.views)
        self._projector: StreamProjector | None = None
        self.env = {
            "PULSE_STORE": "dynamodb",
            "PULSE_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
            "PULSE_REGION": settings.region,
            "PULSE_TABLE_PREFIX": settings.table_prefix,
            "PULSE_TIMEZONE": settings.timezone,
            # One machine, one clock, facts stored before the rebuild: no need to wait long.
            "PULSE_REBUILD_FENCE_SECONDS": str(QUICK.fence_seconds),
            "PULSE_REBUILD_SETTLE_SECONDS": str(QUICK.settle_seconds),
            "PYTHONPATH": str(ROOT),
        }

    def catch_up(self, batch_size: int, retention: Retention = KEEP_ALL, clock: Clock = SYSTEM_CLOCK) -> int:
        # A fresh poller each time, as after a restart: it resumes from the stored checkpoints.
        self.rig.views.retention, self.rig.views.clock = retention, clock
        return self.rig.poller(read_limit=min(batch_size, READ_LIMIT), recent=self.recent).catch_up()

    def next_batch(self, limit: int) -> FeedBatch:
        (shard,) = self.rig.feed.shards()
        position = self.views.checkpoint(PROJECTION, shard.shard_id).position
        reader = self.rig.feed.reader(shard.shard_id, position or None)
        records = []
        while len(records) < limit and (more := reader.read(min(limit - len(records), READ_LIMIT))):
            records.extend(more)
        assert records, "nothing to deliver"
        return feed_batch(shard.shard_id, records)

    def deliver(self, batch: FeedBatch) -> bool:
        # The stream projector reports no such flag: a write that commits nothing moves no
        # change marker, and one that commits anything moves at least one (ChangeMarkers).
        if self._projector is None:
            self._projector = StreamProjector(self.events, self.rig.views, Bucketing(self.timezone))
        before = self.views.change_markers()
        self._projector.handle(batch)
        return self.views.change_markers() != before

    def definitions_version(self) -> int:
        return self.rig.views.definitions_state().version

    def worker_command(self) -> list[str] | None:
        return [sys.executable, "-m", "cli", "worker", "--store", "dynamodb", "--batch-size", "400"]

    def close(self) -> None:
        self._client.close()
        self.rig.close()
        drop_tables(self.settings)


def sqlite_rig(directory: Path, timezone: str, request: pytest.FixtureRequest | None = None) -> ProjectionRig:
    settings = Settings(store="sqlite", db=str(directory / "pulse.db"), timezone=timezone)
    return PositionedRig(settings, {"PULSE_STORE": "sqlite", "PULSE_TIMEZONE": timezone, "PYTHONPATH": str(ROOT)})


def memory_rig(directory: Path, timezone: str, request: pytest.FixtureRequest | None = None) -> ProjectionRig:
    return PositionedRig(Settings(store="memory", db=str(directory / "pulse.db"), timezone=timezone), {})


def dynamodb_rig(directory: Path, timezone: str, request: pytest.FixtureRequest | None = None) -> ProjectionRig:
    if request is None:
        pytest.skip("a DynamoDB rig needs the test's DynamoDB Local: build it with request=")
    base: Settings = request.getfixturevalue("dynamodb_settings")
    return DynamoProjectionRig(
        dataclasses.replace(base, table_prefix=f"{base.table_prefix}-{directory.name}", timezone=timezone)
    )


#: Builders of rigs: ``(directory, timezone, request)``, the request being the test's (for
#: the DynamoDB Local fixtures).
BACKENDS: dict[str, Callable[..., ProjectionRig]] = {
    "sqlite": sqlite_rig,
    "dynamodb": dynamodb_rig,
    "memory": memory_rig,
}


class RigFactory:
    """Builds fresh rigs of one backend (several per test, e.g. one per hypothesis example)."""

    def __init__(self, backend: str, request: pytest.FixtureRequest, directory: Path) -> None:
        self.backend = backend
        self.request = request
        self.directory = directory
        self.rigs: list[ProjectionRig] = []
        self._counter = itertools.count()

    def __call__(self, timezone: str = "UTC") -> ProjectionRig:
        directory = self.directory / f"rig{next(self._counter)}"
        directory.mkdir()
        rig = BACKENDS[self.backend](directory, timezone, self.request)
        self.rigs.append(rig)
        return rig


@pytest.fixture(params=sorted(BACKENDS))
def make_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RigFactory]:
    reason = getattr(request.function, "not_on", {}).get(request.param)
    if reason is not None:
        pytest.skip(f"not on {request.param}: {reason}")
    factory = RigFactory(request.param, request, tmp_path)
    yield factory
    for rig in factory.rigs:
        rig.close()


def worker_env(rig: ProjectionRig) -> dict[str, str]:
    return {**os.environ, **rig.env}
