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

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.clock import SYSTEM_CLOCK, now_utc
from domain.ports import all_facts  # noqa: F401 - re-exported for the test packages
from domain.settings import Settings

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


def store_args(settings: Settings) -> list[str]:
    """The `pulse` command-line options naming the store of ``settings`` (SQLite or DynamoDB)."""
    if settings.store == "sqlite":
        return ["--store", "sqlite", "--db", settings.db]
    return [
        "--store",
        "dynamodb",
        "--dynamodb-endpoint",
        settings.dynamodb_endpoint or "",
        "--region",
        settings.region,
        "--table-prefix",
        settings.table_prefix,
    ]


def lambda_record(raw: dict[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A record polled from DynamoDB Streams as Lambda hands it to a handler: the same
    record with the source ARN and region added, before its JSON round trip."""
    return {
        "eventID": raw["eventID"],
        "eventName": raw["eventName"],
        "eventVersion": raw.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "eventSourceARN": stream_arn,
        "dynamodb": {
            "ApproximateCreationDateTime": raw["dynamodb"]["ApproximateCreationDateTime"].timestamp(),
            "Keys": raw["dynamodb"]["Keys"],
            "NewImage": raw["dynamodb"]["NewImage"],
            "SequenceNumber": raw["dynamodb"]["SequenceNumber"],
            "SizeBytes": raw["dynamodb"]["SizeBytes"],
            "StreamViewType": "NEW_IMAGE",
        },
    }


def in_threads(target: Callable[[Any], object], args: Iterable[Any]) -> None:
    """Run ``target(arg)`` for each of ``args`` at once, a thread each, and wait for all."""
    threads = [threading.Thread(target=target, args=(arg,)) for arg in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
