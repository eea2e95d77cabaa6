"""The SQLite view store writes a batch's counter cells many rows per statement, binding
only what each cell's delta needs (``storage/sqlite_counter_writes.py``): whatever a
batch's size (whole statements, a remainder, both, neither), whatever its deltas (one
value, a count, anything else) and dimensions, and however its cells meet cells already
stored, the counters read back as the in-memory fake's."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.ports import CounterDelta, ViewChanges
from storage.memory import MemoryViewStore
from storage.sqlite_counter_writes import ROWS_PER_STATEMENT
from storage.sqlite_views import SqliteViewStore

MINUTE = 60  # buckets start in epoch seconds (domain.ports.CounterKey)

# A small key space, so later batches meet cells of earlier ones; no, one, two and three
# dimensions (within a metric too, as the store takes them).
KEYS = [
    (metric, "minute", minute * MINUTE, dims)
    for metric in ("revenue", "orders")
    for minute in range(121)
    for dims in ((), ("a",), ("a", "x"), ("b", "y"), ("a", "x", "p"), ("",))
]
# Sizes around the rows per statement: none, a remainder only, whole statements, both.
SIZES = [0, 1, ROWS_PER_STATEMENT - 1, ROWS_PER_STATEMENT, ROWS_PER_STATEMENT + 1, 2 * ROWS_PER_STATEMENT, 250]


def delta(rng: random.Random) -> CounterDelta:
    # Whole amounts: sums are exact whichever order each store adds them in.
    value = float(rng.randint(-50, 50))
    shape = rng.randrange(4)
    if shape == 0:  # one value: count 1, sum = min = max
        return CounterDelta(1, value, value, value)
    if shape == 1:  # a count: no value
        return CounterDelta(rng.randint(1, 5), 0.0, None, None)
    if shape == 2:  # one value with a zero sum, or a count of one
        return rng.choice([CounterDelta(1, 0.0, 0.0, 0.0), CounterDelta(1, 0.0, None, None)])
    low = rng.choice([None, value])
    high = None if low is None else low + rng.randint(0, 50)
    return CounterDelta(rng.randint(1, 5), float(rng.randint(-100, 100)), low, high)


def batch(rng: random.Random, size: int) -> dict:
    return {key: delta(rng) for key in rng.sample(KEYS, size)}


def changes(cells: dict) -> ViewChanges:
    return ViewChanges(counters=cells, gauges={}, event_types={}, events=len(cells), watermark=None)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.sampled_from(SIZES), min_size=1, max_size=4), seed=st.integers(0, 2**32))
def test_counters_written_in_blocks_read_back_as_the_fake(tmp_path_factory, sizes: list[int], seed: int) -> None:
    rng = random.Random(seed)
    batches = [batch(rng, size) for size in sizes]
    sqlite = SqliteViewStore(Path(tmp_path_factory.mktemp("views")) / "views.db")
    fake = MemoryViewStore()
    try:
        for upto, cells in enumerate(batches, start=1):
            for store in (sqlite, fake):
                assert store.apply("counters", "", changes(cells), upto - 1, upto, definitions_version=0)
        for metric in ("revenue", "orders"):
            for group_by in (None, 0, 1, 2):
                expected = fake.read_counters(metric, "minute", 0, 121 * MINUTE, group_by=group_by)
                assert sqlite.read_counters(metric, "minute", 0, 121 * MINUTE, group_by=group_by) == expected
    finally:
        sqlite.close()
