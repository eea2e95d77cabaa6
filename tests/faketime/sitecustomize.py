"""Only for running tests under Debian's libfaketime 0.9.10 (never in CI), e.g.

    FAKETIME_DONT_FAKE_MONOTONIC=1 PYTHONPATH=tests/faketime \\
        faketime '2027-03-28 00:59:59' .venv/bin/python -m pytest tests/unit tests/api tests/projections

With the monotonic clock faked, Python's timed lock waits (sem_clockwait) hang; with it
real, libfaketime's clock_nanosleep wrapper makes Python >= 3.11's time.sleep fail with
EINVAL (wolfcw/libfaketime#426). This sleeps with a relative select() timeout instead.
Tests that run `pulse serve` or DynamoDB Local skip themselves under faketime.
"""

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep
