"""What only DynamoDB's rebuilds have to say (the read-model contract every backend meets is
tests/projections): a metric defined while live batches flow is counted once across the
rebuild's fence, a shard lagging behind the switch counts no early fact twice, a stalled
rebuild is taken over and an abandoned one changes nothing readers see, and the rebuild's
timing comes from the environment."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from domain import metrics as defs
from domain.ports import EventStore
from projections.buckets import Bucketing
from services.counters import Rebuilt
from storage.dynamodb_base import make_client
from tests.dynamodb_projections.conftest import QUICK, DynamoRig
from tests.projections.oracle import EVERYTHING, assert_views_match_facts
from tests.projections.test_exactly_once import ITEMS, REVENUE, STOCK, shop_events
from tests.support import real_now
from workers.dynamodb_rebuild import RebuildInterrupted, RebuildTiming, run_pending_rebuild


def rebuild_in_background(rig: DynamoRig, timing: RebuildTiming) -> tuple[threading.Thread, list[Rebuilt | None]]:
    poller = rig.poller()
    done: list[Rebuilt | None] = []

    def run() -> None:
        done.append(
            run_pending_rebuild(rig.events, rig.views, Bucketing("UTC"), poller.projector.history, "background", timing)
        )

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 10
    while rig.views.definitions_state().build is None:
        assert time.monotonic() < deadline, "the rebuild was not registered"
        time.sleep(0.01)
    return thread, done


def wait_past_fence(rig: DynamoRig) -> None:
    build = rig.views.definitions_state().build
    assert build is not None
    time.sleep(max(0.0, build.fence / 1e6 - real_now().timestamp()) + 0.01)


def test_a_metric_defined_while_facts_flow_counts_each_once_live_during_the_rebuild(rig: DynamoRig) -> None:
    rig.events.ingest(shop_events(25, seed=11, prefix="before"))
    defs.define_metric(rig.events, REVENUE)
    thread, done = rebuild_in_background(rig, RebuildTiming(fence_seconds=0.3, settle_seconds=2.0))
    wait_past_fence(rig)
    rig.events.ingest(shop_events(25, seed=12, prefix="during"))
    # Projected while the rebuild waits: facts received before its fence are left to it,
    # later ones are written to the new generation by these live batches.
    poller = rig.poller()
    poller.catch_up(rebuild=False)
    assert rig.views.definitions_state().build is not None
    thread.join()
    assert done and done[0] is not None and done[0].facts == 25
    rig.events.ingest(shop_events(25, seed=13, prefix="after"))
    poller.catch_up()
    assert_views_match_facts(rig.views, rig.events, [REVENUE], [], "UTC")


def test_a_shard_lagging_behind_the_switch_does_not_count_early_facts_twice(rig: DynamoRig) -> None:
    rig.events.ingest(shop_events(25, seed=21, prefix="early"))
    defs.define_metric(rig.events, ITEMS)
    defs.define_gauge(rig.events, STOCK)
    thread, _ = rebuild_in_background(rig, RebuildTiming(fence_seconds=0.2, settle_seconds=0.3))
    wait_past_fence(rig)
    rig.events.ingest(shop_events(25, seed=22, prefix="late"))
    thread.join()  # switched before any live batch was projected
    assert rig.views.definitions_state().version == 2
    rig.poller().catch_up()
    assert_views_match_facts(rig.views, rig.events, [ITEMS], [STOCK], "UTC")


def revenue_generations(rig: DynamoRig) -> set[str]:
    """The generations of revenue's counter items in the table."""
    client = make_client(rig.settings)
    try:
        pks = {item["pk"]["S"] for item in client.scan(TableName=rig.settings.views_table)["Items"]}
    finally:
        client.close()
    return {pk.split("#")[2] for pk in pks if pk.startswith("C#revenue#")}


def test_a_stalled_rebuild_is_taken_over_and_replaced_generations_are_deleted(rig: DynamoRig) -> None:
    rig.events.ingest(shop_events(30, seed=31))
    defs.define_metric(rig.events, REVENUE)
    poller = rig.poller()
    poller.catch_up()
    first = rig.views.definitions_state().generations["revenue"].gen

    defs.update_metric(rig.events, replace(REVENUE, dimensions=("store",)))
    rig.views.lease_seconds = 0  # a rebuilder that registers, then dies
    rig.views.begin_build(2, ["revenue"], [], owner="crashed", fence_seconds=0)
    rig.views.lease_seconds = 60
    rig.events.ingest(shop_events(30, seed=32, prefix="more"))
    poller.catch_up()

    state = rig.views.definitions_state()
    assert state.version == 2 and state.build is None
    assert state.generations["revenue"].gen == first + 2  # the crashed one's generation was skipped
    revenue_by_store = defs.validate_metric("revenue", "sale", "sum", "amount", ["store"])
    assert_views_match_facts(rig.views, rig.events, [revenue_by_store], [], "UTC")
    assert revenue_generations(rig) == {str(first + 2)}


class StopsAfter:
    """The event store, read by a rebuild that is told to stop after ``pages`` pages."""

    def __init__(self, events: EventStore, pages: int, stop: threading.Event) -> None:
        self.events = events
        self.pages = pages
        self.stop = stop

    def read_facts(self, cursor: str | None = None, limit: int = 1000):
        self.pages -= 1
        if self.pages <= 0:
            self.stop.set()
        return self.events.read_facts(cursor, limit)

    def __getattr__(self, name: str):
        return getattr(self.events, name)


def test_an_abandoned_rebuild_moves_no_marker_and_changes_nothing_readers_see(rig: DynamoRig) -> None:
    rig.events.ingest(shop_events(40, seed=41))
    poller = rig.poller()
    poller.catch_up()
    defs.define_metric(rig.events, REVENUE)
    poller.catch_up(rebuild=False)  # the definition's record: nothing to count yet
    before = rig.views.change_markers()

    stop = threading.Event()
    with pytest.raises(RebuildInterrupted):
        # Abandoned after two pages of the new generation were written (a worker stopping).
        run_pending_rebuild(
            StopsAfter(rig.events, 2, stop),  # type: ignore[arg-type]
            rig.views,
            Bucketing("UTC"),
            poller.projector.history,
            "quitter",
            QUICK,
            stop,
            page_size=10,
        )
    state = rig.views.definitions_state()
    assert state.version == 0 and state.build is None
    assert rig.views.change_markers() == before
    assert rig.views.read_counters("revenue", "day", *EVERYTHING) == []
    assert revenue_generations(rig)  # the abandoned items, garbage until the next switch

    poller.catch_up()  # the next attempt: a fresh generation
    assert_views_match_facts(rig.views, rig.events, [REVENUE], [], "UTC")
    assert revenue_generations(rig) == {str(rig.views.definitions_state().generations["revenue"].gen)}


def test_rebuild_timing_comes_from_the_environment() -> None:
    timing = RebuildTiming.from_env({"PULSE_REBUILD_FENCE_SECONDS": "2.5"}, settle_seconds=None)
    assert timing == RebuildTiming(fence_seconds=2.5, settle_seconds=120.0)
    assert RebuildTiming.from_env({}, settle_seconds=7.0).settle_seconds == 7.0
