"""Skipped values (issue 13, "no silent loss"): a metric of a value counts the facts whose
value property was present but not a number, exactly once like its cells, and recomputes
the count when it is rebuilt; a metric that parses numeric strings sums plain decimal
strings instead. On every backend of tests/projections/conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest

from domain import metrics as defs
from domain.clock import FrozenClock, now_utc
from domain.events import Event
from domain.metrics import SKIPPED
from domain.ports import ViewStore
from projections.counters import plain_decimal
from tests.projections.conftest import ProjectionRig
from tests.projections.oracle import EVERYTHING

REVENUE = defs.validate_metric("revenue", "sale", "sum", "amount", ["store"])
#: Amounts as careless integrations send them: which are numbers with parseNumericStrings.
AMOUNTS: list[object] = [10, 2.5, "12.50", "-3", "1e3", " 4", "NaN", "", True, {"eur": 1}, [1], None, 10**400]


def skipped(views: ViewStore, metric: str = "revenue") -> int:
    return sum(cell.count for cell in views.read_counters(metric, SKIPPED, 0, 1))


def day_total(views: ViewStore, metric: str = "revenue") -> tuple[int, float]:
    cells = views.read_counters(metric, "day", *EVERYTHING)
    return sum(c.count for c in cells), sum(c.sum for c in cells)


def sales(clock: FrozenClock, prefix: str = "s") -> list[Event]:
    at = now_utc(clock) - timedelta(minutes=30)
    return [
        Event(id=f"{prefix}{i}", type="sale", occurred_at=at, properties={"store": "harbor", "amount": amount})
        for i, amount in enumerate(AMOUNTS)
    ]


def test_values_that_are_not_numbers_are_counted_once_per_delivery(
    make_rig: Callable[..., ProjectionRig], clock: FrozenClock
) -> None:
    rig = make_rig()
    defs.define_metric(rig.events, REVENUE)
    rig.catch_up(100)  # the views now reflect the definition
    rig.events.ingest(sales(clock))
    batch = rig.next_batch(100)

    assert rig.deliver(batch) is True
    # 13 amounts: 2 numbers, 1 missing (None), 10 present but not numbers (the huge
    # integer is beyond any double).
    assert skipped(rig.views) == 10
    assert day_total(rig.views) == (2, 12.5)
    assert rig.deliver(batch) is False  # redelivered: counted once
    assert skipped(rig.views) == 10
    assert skipped(rig.views, "type:sale") == 0  # the built-in count has no value to skip


def test_parsing_numeric_strings_recomputes_the_metric_and_its_skipped_count(
    make_rig: Callable[..., ProjectionRig], clock: FrozenClock
) -> None:
    rig = make_rig()
    rig.events.ingest(sales(clock))
    defs.define_metric(rig.events, REVENUE)  # after the facts: a backfill counts them
    rig.catch_up(5)
    assert (skipped(rig.views), day_total(rig.views)) == (10, (2, 12.5))

    defs.update_metric(rig.events, replace(REVENUE, parse_numeric_strings=True))
    rig.catch_up(5)
    # "12.50" and "-3" are plain decimals; "1e3", " 4", "NaN" and "" are not.
    assert (skipped(rig.views), day_total(rig.views)) == (8, (4, 22.0))

    rig.events.ingest(sales(clock, prefix="late"))  # live batches parse too
    rig.catch_up(5)
    assert (skipped(rig.views), day_total(rig.views)) == (16, (8, 44.0))

    defs.delete_metric(rig.events, "revenue")
    rig.catch_up(5)
    assert skipped(rig.views) == 0


@pytest.mark.parametrize(
    ("text", "number"),
    [("12.50", 12.5), ("-3", -3.0), ("0", 0.0), ("007.10", 7.1)]
    + [(bad, None) for bad in ("1e3", "+1", " 1 ", "1 ", "", "-", ".5", "5.", "NaN", "inf", "-Infinity")]
    + [(bad, None) for bad in ("0x10", "1_000", "1,5", "١٢", "9" * 400)],
)
def test_only_plain_finite_decimals_parse(text: str, number: float | None) -> None:
    assert plain_decimal(text) == number
