"""What a subscription pushes, driven in-process on a real SQLite store and worker: the
window of a sliding series moves at the bucket boundary without any new event, a
recomputation whose points did not change is not pushed, a change that lands between
the first value and the subscription starting is not lost, and identical subscribers
share one computation. The app's clock is frozen (tests/support.py), so no bucket
boundary passes unless a test moves it."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from api.auth import OPEN_ACCESS
from api.graphql_live import live_series, live_watcher
from api.graphql_metrics import Resolution
from bootstrap import Pulse, bootstrap
from bootstrap import Worker as SqliteWorker
from domain.clock import FrozenClock
from domain.events import Event
from domain.settings import Settings
from tests.support import at_awkward_instants


@pytest.fixture
def pulse(sqlite_settings: Settings, clock: FrozenClock) -> Iterator[Pulse]:
    settings = Settings(store="sqlite", db=sqlite_settings.db, live_interval_seconds=0.02, timezone="Europe/Paris")
    pulse = bootstrap(settings, clock=clock)
    yield pulse
    pulse.close()


@pytest.fixture
def worker(pulse: Pulse) -> Iterator[SqliteWorker]:
    # A worker process of its own, as `pulse serve` runs beside the server (on the test's clock).
    own = bootstrap(pulse.settings, clock=pulse.clock)
    yield own.worker()
    own.close()


def sale(i: int, at: float) -> Event:
    return Event(id=f"sale-{i}", type="sale", occurred_at=datetime.fromtimestamp(at, UTC), properties={})


def counts(series) -> list[int]:
    return [point.count for point in series.points]


@at_awkward_instants
def test_a_sliding_series_moves_into_the_next_bucket_without_new_events(
    pulse: Pulse, worker: SqliteWorker, clock: FrozenClock
) -> None:
    boundary = math.ceil(clock.now() / 60) * 60
    clock.set(boundary - 0.3)
    pulse.store.ingest([sale(1, clock.now() - 30)])  # in the current (partial) minute
    worker.catch_up()

    live = live_series(pulse, OPEN_ACCESS, "sale", Resolution.MINUTE, last=3)

    async def first_two() -> tuple:
        first = live.current()
        stream = live.stream(first)
        try:
            assert await anext(stream) is first
            slide = asyncio.ensure_future(anext(stream))
            await asyncio.sleep(0.1)
            assert not slide.done()  # waiting, with nothing new, for the end of its bucket 0.3 s away
            clock.set(boundary)
            return first, await asyncio.wait_for(slide, 10)
        finally:
            await stream.aclose()

    first, slid = asyncio.run(first_two())
    assert counts(first) == [0, 0, 1] and first.points[-1].partial
    assert [p.bucket for p in slid.points] == [p.bucket + timedelta(minutes=1) for p in first.points]
    assert counts(slid) == [0, 1, 0]
    assert slid.points[-1].partial and not slid.points[-2].partial


def test_only_changed_points_are_pushed_and_a_change_before_subscribing_is_not_lost(
    pulse: Pulse, worker: SqliteWorker, clock: FrozenClock
) -> None:
    pulse.store.ingest([sale(1, clock.now())])
    worker.catch_up()
    watcher = live_watcher(pulse)
    live = live_series(pulse, OPEN_ACCESS, "sale", Resolution.DAY, last=2)

    async def scenario() -> None:
        first = live.current()
        assert sum(counts(first)) == 1
        # Lands after the first value was computed, before the stream registers with the watcher.
        pulse.store.ingest([sale(2, clock.now())])
        worker.catch_up()
        pushed: asyncio.Queue = asyncio.Queue()

        async def consume() -> None:
            async for value in live.stream(first):
                await pushed.put(value)

        consumer = asyncio.create_task(consume())
        try:
            assert await pushed.get() is first
            assert sum(counts(await asyncio.wait_for(pushed.get(), 10))) == 2

            # A sale far outside the window moves the metric's marker: recomputed, same points, no push.
            before = watcher.stats().recomputations
            pulse.store.ingest([sale(3, clock.now() - 30 * 86400)])
            worker.catch_up()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pushed.get(), 1.0)
            assert watcher.stats().recomputations == before + 1

            pulse.store.ingest([sale(4, clock.now())])
            worker.catch_up()
            assert sum(counts(await asyncio.wait_for(pushed.get(), 10))) == 3
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer

    asyncio.run(scenario())
    assert watcher.stats().subscribers == 0  # closing the stream unsubscribed it


def test_identical_subscribers_share_the_computation_and_different_ones_do_not(
    pulse: Pulse, worker: SqliteWorker, clock: FrozenClock
) -> None:
    pulse.store.ingest([sale(1, clock.now())])
    worker.catch_up()
    watcher = live_watcher(pulse)
    before = watcher.stats().recomputations
    values = [live_series(pulse, OPEN_ACCESS, "sale", Resolution.HOUR, last=5).current() for _ in range(10)]
    assert all(value is values[0] for value in values)
    other = live_series(pulse, OPEN_ACCESS, "sale", Resolution.HOUR, last=6).current()
    assert len(other.points) == 6
    assert watcher.stats().recomputations - before == 2
