"""workers/lanes.py: an archive process that keeps dying soon after its start is started again
after a delay that doubles up to a cap, not every second forever; one that ran a long time
is started again at once."""

from __future__ import annotations

import threading
import time

import pytest

from workers import lanes


class DyingLane:
    """A child that is dead whenever asked, ``lived`` seconds after each start."""

    def __init__(self, lived: float) -> None:
        self.lived = lived
        self.starts: list[float] = []
        self.started_at = 0.0

    def start(self, catch_up: bool = False) -> None:
        self.starts.append(time.monotonic())
        self.started_at = time.monotonic() - self.lived

    def alive(self) -> bool:
        return False

    def wait(self) -> int:
        return 1


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanes, "RESTART_SECONDS", 0.01)
    monkeypatch.setattr(lanes, "MAX_RESTART_SECONDS", 0.16)
    monkeypatch.setattr(lanes, "QUICK_DEATH_SECONDS", 60.0)


def restarts(lane: DyingLane, seconds: float) -> list[float]:
    worker = lanes.LanedWorker(main=None, lane=lane)  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=worker._keep_lane, args=(stop,))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return [b - a for a, b in zip(lane.starts, lane.starts[1:], strict=False)]


def test_quick_deaths_wait_twice_as_long_each_time_up_to_the_cap() -> None:
    gaps = restarts(DyingLane(lived=0.0), 1.2)
    # Each gap is at least the next delay: 0.02, 0.04, 0.08, then the cap, 0.16, every time.
    assert len(gaps) >= 5
    for gap, delay in zip(gaps, [0.02, 0.04, 0.08, 0.16, 0.16, 0.16], strict=False):
        assert gap >= delay
    assert len(gaps) < 12  # not started every poll (0.01 s): 1.2 s holds at most 3 + 1.2 / 0.16


def test_a_child_that_ran_long_is_started_again_at_once() -> None:
    gaps = restarts(DyingLane(lived=3600.0), 1.0)
    assert len(gaps) >= 12  # a start every 0.02 s (a poll, a delay): 1 s holds 50, far above backing off's 8
