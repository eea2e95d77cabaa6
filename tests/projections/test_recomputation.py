"""Randomized workloads: late, duplicate and out-of-order facts, definitions added,
changed and deleted along the way, any batch sizes. The read models must always equal a
recomputation from the stored facts, on every backend of tests/projections/conftest.py."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain import metrics as defs
from domain.events import Event
from tests.projections.conftest import ProjectionRig, RigFactory
from tests.projections.oracle import EVERYTHING, assert_views_match_facts

# 2026-03-08 07:00Z is 02:00 in New York when clocks spring forward: ±3 days crosses it.
BASE = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)

REVENUE = defs.validate_metric("revenue", "sale", "sum", "amount", ["category", "store"])
ORDERS_STORE_1 = defs.validate_metric("orders1", "sale", "count", None, ["category"], [("store", "1")])
ORDERS_STORE_2 = replace(ORDERS_STORE_1, filters=(("store", "2"),))
HIGHEST = defs.validate_metric("highest", "sale", "max", "amount", ["store"])
LOWEST = defs.validate_metric("lowest", "sale", "min", "amount")
BASKET = defs.validate_metric("basket", "sale", "avg", "amount", ["category", "store", "product"])
VIEWS = defs.validate_metric("views", "page_view", "count", None, ["path"])
STOCK = defs.validate_gauge("stock", "stock_level", "level", "product")
ANY_STOCK = defs.validate_gauge("any_stock", "stock_level", "level")

amounts = st.one_of(
    st.integers(-5, 500),
    st.integers(0, 50),
    st.floats(0, 1000, allow_nan=False, allow_infinity=False),
    st.sampled_from([None, "n/a", True]),
)
facts = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["sale", "sale", "page_view", "stock_level"]),
        # Clustered so facts share minutes, hours and days; the spread crosses midnight
        # and, in New York, the DST change.
        "offset": st.sampled_from([-3 * 86400, -86400 - 120, -5 * 3600, -60, 0, 1800]),
        "jitter": st.integers(0, 30),
        "micros": st.integers(0, 999_999),
        "amount": amounts,
        "category": st.sampled_from(["coffee", "coffee", "tea", "(none)", None, "missing"]),
        "store": st.sampled_from([1, 1, 2, "1", None, True]),
        "product": st.sampled_from(["mug", "beans"]),
        "path": st.sampled_from(["/", "/menu"]),
        "level": st.one_of(st.integers(0, 100), st.floats(0, 50, allow_nan=False)),
    }
)


def to_event(index: int, spec: dict[str, Any]) -> Event:
    props: dict[str, Any] = {}
    for name in ("amount", "store", "product", "path", "level"):
        props[name] = spec[name]
    if spec["category"] != "missing":
        props["category"] = spec["category"]
    offset = timedelta(seconds=spec["offset"] + spec["jitter"], microseconds=spec["micros"])
    return Event(id=f"e{index:04d}", type=spec["type"], occurred_at=BASE + offset, properties=props)


def ingest_in_batches(rig: ProjectionRig, events: list[Event], cuts: list[int]) -> None:
    bounds = sorted({0, len(events), *(c % (len(events) + 1) for c in cuts)})
    for start, stop in itertools.pairwise(bounds):
        if stop > start:
            rig.events.ingest(events[start:stop])


#: Examples per backend: DynamoDB Local takes seconds an example.
EXAMPLES = {"sqlite": 30, "memory": 30, "dynamodb": 3}


def test_read_models_equal_a_recomputation(make_rig: RigFactory) -> None:
    @settings(max_examples=EXAMPLES[make_rig.backend], deadline=None)
    @given(
        specs=st.lists(facts, min_size=20, max_size=150),
        resend=st.lists(st.integers(0, 10_000), max_size=15),
        split=st.integers(0, 10_000),
        cuts=st.lists(st.integers(0, 10_000), max_size=6),
        batch_sizes=st.tuples(st.sampled_from([1, 3, 17, 64, 500]), st.sampled_from([1, 3, 17, 64, 500])),
        timezone=st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"]),
    )
    def check(
        specs: list[dict[str, Any]],
        resend: list[int],
        split: int,
        cuts: list[int],
        batch_sizes: tuple[int, int],
        timezone: str,
    ) -> None:
        rig = make_rig(timezone)
        events = [to_event(i, spec) for i, spec in enumerate(specs)]
        # Resends repeat an earlier id, sometimes with other content: only the first counts.
        for n, pick in enumerate(resend):
            original = events[pick % len(events)]
            events.append(replace(original, properties={**original.properties, "amount": 10_000 + n}))
        first, second = events[: split % (len(events) + 1)], events[split % (len(events) + 1) :]

        for metric in (REVENUE, ORDERS_STORE_1):
            defs.define_metric(rig.events, metric)
        defs.define_gauge(rig.events, STOCK)
        ingest_in_batches(rig, first, cuts)
        rig.catch_up(batch_sizes[0])

        # Defined, changed and deleted after facts exist: backfilled, rebuilt, removed.
        for metric in (HIGHEST, LOWEST, BASKET, VIEWS):
            defs.define_metric(rig.events, metric)
        defs.define_gauge(rig.events, ANY_STOCK)
        defs.update_metric(rig.events, ORDERS_STORE_2)
        defs.delete_metric(rig.events, "lowest")
        ingest_in_batches(rig, second, cuts[::-1])
        rig.catch_up(batch_sizes[1])

        stored = assert_views_match_facts(
            rig.views,
            rig.events,
            [REVENUE, ORDERS_STORE_2, HIGHEST, BASKET, VIEWS],
            [STOCK, ANY_STOCK],
            timezone,
        )
        assert len(stored) == len({e.id for e in events})
        for resolution in ("minute", "hour", "day"):
            assert rig.views.read_counters("lowest", resolution, *EVERYTHING) == []
        assert rig.catch_up(7) == 0

    check()
