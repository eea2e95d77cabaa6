"""Small helpers shared by test packages, and the one place tests learn what time it is.

Time. A test never calls ``time.time()`` or ``datetime.now()`` for "now":

- in-process code under test is given the ``clock`` fixture (tests/conftest.py), a
  ``FrozenClock`` at one of ``AWKWARD_INSTANTS``, and the test builds its data from that
  same clock (``now_utc(clock)``); ``at_awkward_instants`` runs a test at each of them;
- code running in another process (``pulse serve``, ``pulse worker``) or time kept by
  something else (DynamoDB Local's TTL, receivedAt stamped by a store) reads the machine's
  clock, so those tests build their data from ``real_now()``, relative to it.

So the suite passes whenever it runs; to check, run it under faketime at an awkward
moment (tests/faketime/sitecustomize.py says how).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.clock import SYSTEM_CLOCK, now_utc
from domain.events import RecordedEvent
from domain.ports import EventStore

#: Instants chosen to be awkward, each just before a boundary a bucket, a window or a
#: retention horizon could trip over. Every one is later than the fixed dates test data
#: uses (2026-11), so those are always in the past.
AWKWARD_INSTANTS: dict[str, datetime] = {
    # 23:59:58 in Paris on New Year's Eve: 2 s before a new local day, month and year,
    # and before a UTC hour.
    "paris-new-year": datetime(2026, 12, 31, 22, 59, 58, tzinfo=UTC),
    # 01:59:59.5 in Paris, half a second before clocks skip to 03:00: a 23-hour local day.
    "paris-spring-forward": datetime(2027, 3, 28, 0, 59, 59, 500_000, tzinfo=UTC),
    # 02:59:59 CEST in Paris, a second before clocks go back to 02:00: a 25-hour local day.
    "paris-fall-back": datetime(2027, 10, 31, 0, 59, 59, tzinfo=UTC),
    # The last millisecond of a UTC day (01:59:59.999 in Paris, summer time).
    "utc-midnight": datetime(2030, 6, 15, 23, 59, 59, 999_000, tzinfo=UTC),
}
DEFAULT_INSTANT = "paris-new-year"

#: Runs a test that takes the ``clock`` fixture once per awkward instant.
at_awkward_instants = pytest.mark.parametrize("clock", sorted(AWKWARD_INSTANTS), indirect=True)


def real_now() -> datetime:
    """Now by the machine's clock, for tests of code that reads it in another process."""
    return now_utc(SYSTEM_CLOCK)


def all_facts(store: EventStore, page_size: int = 1000) -> list[RecordedEvent]:
    """Every fact in the store, read page by page as a catching-up worker would."""
    facts: list[RecordedEvent] = []
    cursor = None
    while True:
        page = store.read_facts(cursor, limit=page_size)
        if not page.events:
            return facts
        facts.extend(page.events)
        cursor = page.cursor
