"""ViewStore.change_markers: the per-key versions live subscriptions poll.

Runs once per backend in tests/projections/conftest.py BACKENDS (the contract every view
store meets): a key's version grows exactly when a committed write changes its data,
other keys keep theirs, and a write that commits nothing moves nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from domain import metrics as defs
from domain.events import Event
from domain.ports import ALL_TYPES, PROJECTIONS_MARKER, CheckpointConflict, gauge_marker, metric_marker, recent_marker
from projections.counters import PROJECTION
from tests.projections.conftest import ProjectionRig, not_on
from tests.projections.test_exactly_once import runner_for

START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
REVENUE = defs.validate_metric("revenue", "sale", "sum", "amount", ["store"])
STOCK = defs.validate_gauge("stock", "stock_level", "level", "product")
SALE = metric_marker("type:sale")
VISIT = metric_marker("type:visit")


def sale(i: int, amount: float = 10.0, at: datetime = START) -> Event:
    return Event(id=f"sale-{i}", type="sale", occurred_at=at, properties={"amount": amount, "store": "harbor"})


def visit(i: int) -> Event:
    return Event(id=f"visit-{i}", type="visit", occurred_at=START, properties={})


def stock(i: int, level: int) -> Event:
    return Event(
        id=f"stock-{i}", type="stock_level", occurred_at=START + timedelta(seconds=i), properties={"level": level}
    )


def moved(before: dict[str, int], after: dict[str, int]) -> set[str]:
    """Keys whose version differs; asserting, on the way, that none went backwards."""
    for key, version in before.items():
        assert after.get(key, 0) >= version, f"{key} went back from {version} to {after.get(key)}"
    return {key for key in after.keys() | before.keys() if after.get(key, 0) != before.get(key, 0)}


def test_a_fresh_store_has_no_markers(make_rig: Callable[..., ProjectionRig]) -> None:
    assert make_rig().views.change_markers() == {}


def test_a_batch_moves_exactly_the_keys_it_changes(make_rig: Callable[..., ProjectionRig]) -> None:
    rig = make_rig()
    rig.events.ingest([sale(1), visit(1)])
    rig.catch_up(100)
    first = rig.views.change_markers()
    assert {SALE, VISIT, PROJECTIONS_MARKER} <= set(first)
    assert all(isinstance(version, int) for version in first.values())

    rig.events.ingest([sale(2), sale(3)])
    rig.catch_up(100)
    second = rig.views.change_markers()
    # visit's subscribers are not woken; the feeds of sales and of every type are
    assert moved(first, second) == {SALE, PROJECTIONS_MARKER, recent_marker("sale"), recent_marker(ALL_TYPES)}
    assert second[SALE] > first[SALE]


def test_one_bump_per_batch_whatever_its_size(make_rig: Callable[..., ProjectionRig]) -> None:
    rig = make_rig()
    rig.events.ingest([sale(0)])
    rig.catch_up(100)
    before = rig.views.change_markers()
    rig.events.ingest([sale(i, at=START + timedelta(minutes=i)) for i in range(1, 301)])
    rig.catch_up(1000)  # the whole backlog in one batch
    after = rig.views.change_markers()
    # Monotonic, and not one step per event or per counter cell (300 events, ~900 cells).
    assert 1 <= after[SALE] - before[SALE] <= 10


def test_defining_and_deleting_metrics_and_gauges_moves_their_keys(make_rig: Callable[..., ProjectionRig]) -> None:
    rig = make_rig()
    rig.events.ingest([sale(1), stock(1, 5), visit(1)])
    rig.catch_up(100)
    before = rig.views.change_markers()

    defs.define_metric(rig.events, REVENUE)
    defs.define_gauge(rig.events, STOCK)
    rig.catch_up(100)  # backfills both from the stored facts
    defined = rig.views.change_markers()
    assert {metric_marker("revenue"), gauge_marker("stock")} <= moved(before, defined)
    assert VISIT not in moved(before, defined)
    assert rig.views.read_gauges("stock")[0].value == 5

    rig.events.ingest([stock(2, 7)])
    rig.catch_up(100)
    restocked = rig.views.change_markers()
    assert gauge_marker("stock") in moved(defined, restocked)
    assert metric_marker("revenue") not in moved(defined, restocked)  # no sale in the batch

    defs.delete_metric(rig.events, "revenue")
    rig.catch_up(100)
    deleted = rig.views.change_markers()
    assert metric_marker("revenue") in moved(restocked, deleted)
    assert rig.views.read_counters("revenue", "day", 0, 2**40) == []


def test_a_redelivered_batch_moves_nothing(make_rig: Callable[..., ProjectionRig]) -> None:
    rig = make_rig()
    rig.events.ingest([sale(i) for i in range(20)])
    batch = rig.next_batch(10)
    assert rig.deliver(batch) is True
    applied = rig.views.change_markers()

    assert rig.deliver(batch) is False  # redelivered
    assert rig.views.change_markers() == applied
    assert sum(cell.count for cell in rig.views.read_counters("type:sale", "day", 0, 2**40)) == 10


@not_on(
    "dynamodb",
    reason="the CounterWriter port of a positioned log (a batch from a checkpoint, a rebuild in one transaction);"
    " DynamoDB's item guards count a stale batch's new records once, and its abandoned rebuild is"
    " tests/dynamodb_projections/test_rebuild_fence.py",
)
def test_a_stale_worker_and_an_aborted_rebuild_move_nothing(make_rig: Callable[..., ProjectionRig]) -> None:
    rig = make_rig()
    rig.events.ingest([sale(i) for i in range(20)])
    runner = runner_for(rig)
    page = rig.events.read_facts(None, limit=10)
    upto = page.events[-1].position
    assert runner.process(page.events, after=0, upto=upto) is True
    applied = rig.views.change_markers()

    rest = rig.events.read_facts(page.cursor, limit=10)
    with pytest.raises(CheckpointConflict):
        runner.process(rest.events, after=0, upto=rest.events[-1].position)  # a stale worker
    assert rig.views.change_markers() == applied

    position = rig.views.checkpoint(PROJECTION).position
    with (
        pytest.raises(RuntimeError, match="aborted"),
        rig.views.rebuild(PROJECTION, "", position, 0, ["type:sale"], []) as add,
    ):
        add(runner.projection.project(rest.events))
        raise RuntimeError("aborted")
    assert rig.views.change_markers() == applied
    assert sum(cell.count for cell in rig.views.read_counters("type:sale", "day", 0, 2**40)) == 10


def test_pruning_moves_the_pruned_metrics_only(make_rig: Callable[..., ProjectionRig]) -> None:
    rig = make_rig()
    old = START - timedelta(days=30)
    rig.events.ingest([sale(1, at=old), visit(1)])
    rig.catch_up(100)
    before = rig.views.change_markers()

    assert rig.views.prune("minute", int((old + timedelta(days=1)).timestamp())) == 1  # the old sale's minute
    pruned = rig.views.change_markers()
    assert moved(before, pruned) == {SALE}  # the visit is recent: its minute stays

    assert rig.views.prune("minute", int((old + timedelta(days=1)).timestamp())) == 0
    assert rig.views.change_markers() == pruned  # nothing deleted, nothing moved
