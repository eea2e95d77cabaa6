"""No cell older than its retention is written (issue 13): a fact counts in the cells of
every resolution whose retention horizon its bucket starts after, at the worker's clock,
live, in a backfill and (same handler) in a replay; on every backend of
tests/projections/conftest.py. Pruning then has nothing of theirs to delete."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from domain import metrics as defs
from domain.clock import FrozenClock, now_utc
from domain.events import Event
from domain.ports import ViewStore
from projections.buckets import Retention
from tests.projections.conftest import ProjectionRig
from tests.projections.oracle import EVERYTHING
from tests.support import at_awkward_instants

REVENUE = defs.validate_metric("revenue", "sale", "sum", "amount", ["store"])
#: Defined after the facts: its cells come from a backfill.
ITEMS = defs.validate_metric("items", "sale", "count", None, ["store"])

#: Minutes are kept 7 days and a day of margin, hours 400 days, days forever (the default
#: Retention): one fact on each side of each horizon, a minute (a second) away from it.
AGES = {
    "recent": timedelta(hours=1),
    "minutes_kept": timedelta(days=8, minutes=-1),
    "minutes_gone": timedelta(days=8, minutes=1),
    "hours_kept": timedelta(days=400, hours=-1),
    "hours_gone": timedelta(days=400, seconds=1),
}


def counted(views: ViewStore, metric: str, resolution: str) -> tuple[int, float]:
    cells = views.read_counters(metric, resolution, *EVERYTHING)
    return sum(c.count for c in cells), sum(c.sum for c in cells)


def stored_cells(views: ViewStore, metric: str) -> dict[str, int]:
    return {
        resolution: len(views.read_counters(metric, resolution, *EVERYTHING, group_by=0))
        for resolution in ("minute", "hour", "day")
    }


@at_awkward_instants
def test_cells_older_than_their_retention_are_not_written(
    make_rig: Callable[..., ProjectionRig], clock: FrozenClock
) -> None:
    rig = make_rig("Europe/Paris")
    defs.define_metric(rig.events, REVENUE)
    rig.catch_up(10, Retention(), clock)
    now = now_utc(clock)
    rig.events.ingest(
        [
            Event(id=name, type="sale", occurred_at=now - age, properties={"amount": 1, "store": "harbor"})
            for name, age in AGES.items()
        ]
    )
    rig.catch_up(10, Retention(), clock)
    defs.define_metric(rig.events, ITEMS)
    rig.catch_up(10, Retention(), clock)

    for metric in ("revenue", "items", "type:sale"):  # live, backfilled, built-in
        assert counted(rig.views, metric, "minute")[0] == 2, metric  # recent, minutes_kept
        assert counted(rig.views, metric, "hour")[0] == 4, metric  # all but hours_gone
        assert counted(rig.views, metric, "day")[0] == 5, metric  # days are kept forever
    assert counted(rig.views, "revenue", "day") == (5, 5.0)
    # Nothing past the horizons was written, so pruning at the same instant deletes nothing.
    assert all(
        rig.views.prune(resolution, horizon) == 0 for resolution, horizon in Retention().horizons(clock.now()).items()
    )


def test_without_a_horizon_every_cell_is_written(make_rig: Callable[..., ProjectionRig], clock: FrozenClock) -> None:
    rig = make_rig()
    defs.define_metric(rig.events, REVENUE)
    now = now_utc(clock)
    rig.events.ingest(
        [Event(id=name, type="sale", occurred_at=now - age, properties={"amount": 1}) for name, age in AGES.items()]
    )
    rig.catch_up(10, Retention(minute_days=None, hour_days=None), clock)
    assert [counted(rig.views, "revenue", r)[0] for r in ("minute", "hour", "day")] == [5, 5, 5]
