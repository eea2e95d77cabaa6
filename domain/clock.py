"""What time it is, as something passed in.

Code whose results depend on the wall clock (retention horizons, the default end of a
series range and its partial bucket, the future bound of ``occurredAt``, stream-token
expiry) reads it from a ``Clock`` it was given, defaulting to ``SYSTEM_CLOCK``, instead
of calling ``time.time()``: tests freeze it at an awkward instant with ``FrozenClock``.

Timeouts, intervals and rates keep ``time.monotonic()``. Instants stamped on what is
stored (``receivedAt``, checkpoint times), the ages measured from them (projection lag)
and cross-process coordination (rebuild fences and leases) keep the system clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """The current instant, in epoch seconds."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Clock = SystemClock()


class FrozenClock:
    """A clock that stands still at an instant until ``set`` or ``advance`` moves it."""

    def __init__(self, at: float | datetime) -> None:
        self._now = _seconds(at)

    def now(self) -> float:
        return self._now

    def set(self, at: float | datetime) -> None:
        self._now = _seconds(at)

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def __repr__(self) -> str:
        return f"FrozenClock({now_utc(self).isoformat()})"


def now_utc(clock: Clock) -> datetime:
    """The clock's instant as an aware UTC datetime."""
    return datetime.fromtimestamp(clock.now(), UTC)


def _seconds(at: float | datetime) -> float:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError(f"{at!r} has no UTC offset: give an aware datetime")
        return at.timestamp()
    return float(at)


__all__ = ["SYSTEM_CLOCK", "Clock", "FrozenClock", "SystemClock", "now_utc"]
