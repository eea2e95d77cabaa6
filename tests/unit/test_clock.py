"""The clock code reads "now" from: the system's, and a frozen one for tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.clock import SYSTEM_CLOCK, FrozenClock, now_utc


def test_a_frozen_clock_stands_still_until_moved() -> None:
    paris_eve = datetime(2026, 12, 31, 23, 59, 58, tzinfo=timezone(timedelta(hours=1)))
    clock = FrozenClock(paris_eve)
    assert clock.now() == clock.now() == paris_eve.timestamp()
    clock.advance(2.5)
    assert now_utc(clock) == datetime(2026, 12, 31, 23, 0, 0, 500_000, tzinfo=UTC)
    clock.set(0)
    assert now_utc(clock) == datetime(1970, 1, 1, tzinfo=UTC)


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        FrozenClock(datetime(2026, 12, 31, 23, 59, 58))


def test_the_system_clock_is_the_machines() -> None:
    before = time.time()
    assert before <= SYSTEM_CLOCK.now() <= time.time()
    assert now_utc(SYSTEM_CLOCK).tzinfo is UTC
