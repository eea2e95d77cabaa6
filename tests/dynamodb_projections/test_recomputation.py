"""On DynamoDB Local through the real stream: counters, sums, min/max and gauges equal a
recomputation from the stored facts, with late, resent and out-of-order facts, batches
delivered twice or cut elsewhere, and metrics defined, changed and deleted midway —
including while live batches flow (the rebuild's fence) and after a stalled rebuild."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import metrics as defs
from projections.buckets import Bucketing
from storage.dynamodb import make_client
from tests.dynamodb_projections.conftest import DynamoRig
from tests.dynamodb_projections.test_view_store import stream_records
from tests.projections.oracle import EVERYTHING, assert_views_match_facts
from tests.projections.test_exactly_once import ITEMS, REVENUE, STOCK, shop_events
from tests.projections.test_recomputation import (
    ANY_STOCK,
    BASKET,
    HIGHEST,
    LOWEST,
    ORDERS_STORE_1,
    ORDERS_STORE_2,
    VIEWS,
    facts,
    ingest_in_batches,
    to_event,
)
from tests.support import real_now
from workers.projection_runner import Rebuilt
from workers.stream_projector import RebuildTiming, run_pending_rebuild


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=st.lists(facts, min_size=8, max_size=30),
    resend=st.lists(st.integers(0, 10_000), max_size=6),
    split=st.integers(0, 10_000),
    cuts=st.lists(st.integers(0, 10_000), max_size=3),
    read_limits=st.tuples(st.sampled_from([1, 4, 1000]), st.sampled_from([3, 1000])),
    again=st.tuples(st.integers(0, 10_000), st.integers(1, 12)),
    timezone=st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"]),
)
def test_read_models_equal_a_recomputation(
    make_dynamo_rig: Callable[..., DynamoRig],
    specs: list[dict[str, Any]],
    resend: list[int],
    split: int,
    cuts: list[int],
    read_limits: tuple[int, int],
    again: tuple[int, int],
    timezone: str,
) -> None:
    rig = make_dynamo_rig(timezone)
    events = [to_event(i, spec) for i, spec in enumerate(specs)]
    for n, pick in enumerate(resend):  # resent ids, sometimes with other content: only the first counts
        original = events[pick % len(events)]
        events.append(replace(original, properties={**original.properties, "amount": 10_000 + n}))
    first, second = events[: split % (len(events) + 1)], events[split % (len(events) + 1) :]

    for metric in (REVENUE, ORDERS_STORE_1):
        defs.define_metric(rig.events, metric)
    defs.define_gauge(rig.events, STOCK)
    ingest_in_batches(rig, first, cuts)
    rig.poller(read_limit=read_limits[0]).catch_up()

    for metric in (HIGHEST, LOWEST, BASKET, VIEWS):
        defs.define_metric(rig.events, metric)
    defs.define_gauge(rig.events, ANY_STOCK)
    defs.update_metric(rig.events, ORDERS_STORE_2)
    defs.delete_metric(rig.events, "lowest")
    ingest_in_batches(rig, second, cuts[::-1])
    poller = rig.poller(read_limit=read_limits[1])  # a fresh worker, as after a restart
    poller.catch_up()

    metrics = [REVENUE, ORDERS_STORE_2, HIGHEST, BASKET, VIEWS]
    assert_views_match_facts(rig.views, rig.events, metrics, [STOCK, ANY_STOCK], timezone)
    # Some of the stream delivered once more, cut anywhere: nothing changes.
    records = stream_records(rig)
    start = again[0] % len(records)
    (shard,) = rig.feed.shards()
    poller.projector.apply(shard.shard_id, records[start : start + again[1]])
    stored = assert_views_match_facts(rig.views, rig.events, metrics, [STOCK, ANY_STOCK], timezone)
    assert len(stored) == len({e.id for e in events})
    for resolution in ("minute", "hour", "day"):
        assert rig.views.read_counters("lowest", resolution, *EVERYTHING) == []


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
    client = make_client(rig.settings)
    try:
        pks = {item["pk"]["S"] for item in client.scan(TableName=rig.settings.views_table)["Items"]}
    finally:
        client.close()
    revenue_generations = {pk.split("#")[2] for pk in pks if pk.startswith("C#revenue#")}
    assert revenue_generations == {str(first + 2)}


def test_rebuild_timing_comes_from_the_environment() -> None:
    timing = RebuildTiming.from_env({"PULSE_REBUILD_FENCE_SECONDS": "2.5"}, settle_seconds=None)
    assert timing == RebuildTiming(fence_seconds=2.5, settle_seconds=120.0)
    assert RebuildTiming.from_env({}, settle_seconds=7.0).settle_seconds == 7.0
