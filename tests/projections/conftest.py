"""Projection rigs: an event store, a view store and a way to run the backend's worker.

Every test here takes ``make_rig`` and runs once per backend in ``BACKENDS``. A backend
provides ``events`` (EventStore), ``views`` (ViewStore), ``catch_up(batch_size)`` (run its
worker in-process until every stored fact is projected) and ``worker_command()`` (the
argv of its worker as a real process, for the kill -9 test). To add DynamoDB, add a
builder to ``BACKENDS`` that returns a ``ProjectionRig`` on DynamoDB Local tables.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bootstrap import WorkerOptions, bootstrap
from domain.clock import SYSTEM_CLOCK, Clock
from domain.ports import EventStore, PositionedViewStore, ViewStore
from domain.settings import Settings
from projections.buckets import Bucketing, Retention
from projections.recent import RecentEventsProjection
from services.counters import PositionedCounters
from services.engine import ProjectionEngine, ReadModelHandler
from storage.sqlite_recent import SqliteRecentEvents
from workers.log_tail import LogTail, PositionedEventStore

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ProjectionRig:
    backend: str
    settings: Settings
    events: EventStore
    views: ViewStore
    catch_up: Callable[[int], int]
    worker_command: Callable[[], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def timezone(self) -> str:
        return self.settings.timezone

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


def log_tail(
    events: PositionedEventStore,
    views: PositionedViewStore,
    timezone: str,
    retention: Retention | None = None,
    batch_size: int = 5000,
    idle_seconds: float = 0.02,
    clock: Clock = SYSTEM_CLOCK,
) -> LogTail:
    """A worker as `pulse worker` builds it on the embedded store (counters and recent events)."""
    counters = PositionedCounters(events, views, Bucketing(timezone), retention, batch_size)
    recent = ReadModelHandler(RecentEventsProjection(), SqliteRecentEvents(views))  # type: ignore[arg-type]
    engine = ProjectionEngine([counters, recent])
    return LogTail(events, engine, batch_size=batch_size, idle_seconds=idle_seconds, clock=clock)


def sqlite_rig(directory: Path, timezone: str) -> ProjectionRig:
    settings = Settings(store="sqlite", db=str(directory / "pulse.db"), timezone=timezone)
    pulse = bootstrap(settings)
    pulse.worker(WorkerOptions())  # what a worker does on start (e.g. the time-zone check)
    backend = pulse.backend

    def catch_up(batch_size: int) -> int:
        # A fresh worker each time, as after a restart: it must resume from the stored checkpoint.
        return log_tail(backend.events, backend.views, timezone, batch_size=batch_size).catch_up()  # type: ignore[arg-type]

    def command() -> list[str]:
        return [sys.executable, "-m", "cli", "worker", "--db", settings.db, "--batch-size", "400"]

    return ProjectionRig(
        backend="sqlite",
        settings=settings,
        events=backend.events,
        views=backend.views,
        catch_up=catch_up,
        worker_command=command,
        env={"PULSE_STORE": "sqlite", "PULSE_TIMEZONE": timezone, "PYTHONPATH": str(ROOT)},
        closers=[pulse.close],
    )


BACKENDS: dict[str, Callable[[Path, str], ProjectionRig]] = {"sqlite": sqlite_rig}


@pytest.fixture(params=sorted(BACKENDS))
def make_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., ProjectionRig]]:
    """Builds fresh rigs of one backend (several per test, e.g. one per hypothesis example)."""
    rigs: list[ProjectionRig] = []
    counter = itertools.count()

    def make(timezone: str = "UTC") -> ProjectionRig:
        directory = tmp_path / f"rig{next(counter)}"
        directory.mkdir()
        rig = BACKENDS[request.param](directory, timezone)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def worker_env(rig: ProjectionRig) -> dict[str, str]:
    return {**os.environ, **rig.env}
