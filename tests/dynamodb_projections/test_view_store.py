"""The DynamoDB view store on DynamoDB Local, what only it has to say (the read-model
contract every backend meets is tests/projections): exactly-once per item under redelivery
and changed batch boundaries, min/max folding, gauges, item layout, TTL, reads across
slices, retired shards' guards, the markers of a rebuild's switch."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from domain import metrics as defs
from domain.events import Event
from domain.ports import (
    PROJECTIONS_MARKER,
    CounterDelta,
    GaugeValue,
    ViewChanges,
    gauge_marker,
    metric_marker,
)
from projections.buckets import Bucketing, Retention
from projections.counters import PROJECTION
from storage.dynamodb_base import make_client
from storage.dynamodb_feed import ChangeRecord
from storage.dynamodb_generations import GenerationChanges
from storage.dynamodb_view_items import seq_key, slices, sortable
from tests.dynamodb_projections.conftest import DynamoRig
from tests.projections.oracle import all_facts, assert_views_match_facts
from tests.projections.test_exactly_once import ITEMS, REVENUE, STOCK, shop_events
from tests.support import real_now

UTC_DAY = Bucketing("UTC")


def stream_records(rig: DynamoRig) -> list[ChangeRecord]:
    """Every record of the (single) shard of a fresh table, in order."""
    (shard,) = rig.feed.shards()
    reader = rig.feed.reader(shard.shard_id)
    records: list[ChangeRecord] = []
    while batch := reader.read():
        records.extend(batch)
    return records


def stored_items(rig: DynamoRig) -> list[dict[str, Any]]:
    """The read-model items (checkpoints aside), sorted: what a redelivery must not change."""
    client = make_client(rig.settings)
    try:
        items = client.scan(TableName=rig.settings.views_table, ConsistentRead=True)["Items"]
    finally:
        client.close()
    return sorted((i for i in items if i["pk"]["S"] != "CP"), key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


def get_item(rig: DynamoRig, pk: str, sk: str) -> dict[str, Any]:
    client = make_client(rig.settings)
    try:
        return client.get_item(
            TableName=rig.settings.views_table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )["Item"]
    finally:
        client.close()


def test_a_batch_delivered_twice_changes_nothing_and_other_boundaries_count_each_record_once(rig: DynamoRig) -> None:
    defs.define_metric(rig.events, REVENUE)
    defs.define_metric(rig.events, ITEMS)
    defs.define_gauge(rig.events, STOCK)
    poller = rig.poller()
    poller.catch_up()  # the definitions get their generations
    rig.events.ingest(shop_events(40, seed=3))
    records = [r for r in stream_records(rig) if r.event and r.event.stream_id == "$facts"]
    (shard,) = rig.feed.shards()
    project = poller.apply

    project(shard.shard_id, records[:20])
    once = stored_items(rig)
    project(shard.shard_id, records[:20])  # redelivered as is: every item's guard refuses it
    assert stored_items(rig) == once

    # A retry that starts inside the first batch and ends further (a poller restarted with
    # a bigger read, Lambda retrying from a reported record): items already holding part
    # of it get only the records after what they hold.
    project(shard.shard_id, records[12:30])
    project(shard.shard_id, records[30:])
    project(shard.shard_id, records[5:15])  # an old batch again: nothing
    assert_views_match_facts(rig.views, rig.events, [REVENUE, ITEMS], [STOCK], "UTC")
    checkpoint = rig.views.checkpoint(PROJECTION, shard.shard_id)
    assert checkpoint.position == int(records[-1].sequence_number)
    assert checkpoint.watermark == max(int(e.occurred_at.timestamp() * 1e6) for e in all_facts(rig.events))


def cell(metric: str, resolution: str, bucket: int, n: int, total: float, low=None, high=None) -> ViewChanges:
    return ViewChanges(
        counters={(metric, resolution, bucket, ("x",)): CounterDelta(n, total, low, high)},
        gauges={},
        event_types={},
        events=n,
        watermark=None,
    )


def test_min_and_max_fold_in_whatever_the_order_and_a_redelivery_keeps_them(rig: DynamoRig) -> None:
    views = rig.views
    bucket = 1_795_000_000 - 1_795_000_000 % 3600
    write = views.write_batch
    write("s", 1, 1, [GenerationChanges(cell("m", "hour", bucket, 2, 10.0, 4.0, 6.0), 1)])
    write("s", 2, 3, [GenerationChanges(cell("m", "hour", bucket, 1, -1.5, -1.5, -1.5), 1)])
    write("s", 4, 4, [GenerationChanges(cell("m", "hour", bucket, 1, 9.25, 9.25, 9.25), 1)])
    write("s", 2, 3, [GenerationChanges(cell("m", "hour", bucket, 1, -1.5, -1.5, -1.5), 1)])  # again
    write("other", 1, 1, [GenerationChanges(cell("m", "hour", bucket, 1, 0.0, 5e-324, 5e-324), 1)])
    views.finish_build(views.begin_build(1, ["m"], [], "test", fence_seconds=0))  # make generation 1 readable
    (found,) = views.read_counters("m", "hour", bucket, bucket + 1)
    assert (found.count, found.min, found.max) == (5, -1.5, 9.25)
    assert math.isclose(found.sum, 17.75)


def test_gauges_keep_the_latest_occurred_at_then_id_in_any_order(rig: DynamoRig) -> None:
    views = rig.views

    def reading(value: float, micros: int, event_id: str) -> ViewChanges:
        return ViewChanges({}, {("stock", "mug"): GaugeValue(value, micros, event_id)}, {}, 1, micros)

    views.write_batch("s", 1, 1, [GenerationChanges(reading(7, 2_000, "b"), 1)])
    views.write_batch("s", 2, 2, [GenerationChanges(reading(9, 1_000, "z"), 1)])  # older: ignored
    views.write_batch("s", 3, 3, [GenerationChanges(reading(8, 2_000, "a"), 1)])  # same time, smaller id
    views.write_batch("s", 4, 4, [GenerationChanges(reading(0.1, 2_000, "c"), 1)])  # same time, greater id
    views.write_batch("s", 3, 3, [GenerationChanges(reading(8, 2_000, "a"), 1)])  # redelivered
    views.finish_build(views.begin_build(1, [], ["stock"], "test", fence_seconds=0))
    (found,) = views.read_gauges("stock")
    assert (found.key, found.value, found.occurred_at, found.event_id) == ("mug", 0.1, 2_000, "c")
    assert views.read_gauges("stock", ["beans"]) == []


def test_item_layout_slices_and_retention_ttl(rig: DynamoRig) -> None:
    # Default retention (the rig keeps everything), on a fact recent enough not to expire yet.
    rig.views.retention = Retention()
    moment = real_now().replace(second=30, microsecond=0) - timedelta(hours=1)
    event = Event(id="e1", type="sale", occurred_at=moment, properties={"category": "x" * 2000})
    long_dims = defs.validate_metric("long", "sale", "count", None, ["category"])
    defs.define_metric(rig.events, long_dims)
    rig.events.ingest([event])
    rig.poller().catch_up()

    minute, hour, day = (UTC_DAY.floor(resolution, moment.timestamp()) for resolution in ("minute", "hour", "day"))
    assert get_item(rig, f"C#type:sale#0#minute#{moment:%Y-%m-%d}", f"{minute + 10**11:012d}#[]")["expiresAt"] == {
        "N": str(minute + 8 * 86400)  # 7 days and the day SQLite's prune also keeps
    }
    assert get_item(rig, f"C#type:sale#0#hour#{moment:%Y-%m}", f"{hour + 10**11:012d}#[]")["expiresAt"] == {
        "N": str(hour + 400 * 86400)
    }
    assert "expiresAt" not in get_item(rig, f"C#type:sale#0#day#{moment:%Y}", f"{day + 10**11:012d}#[]")
    # A dimension value too long for a sort key: hashed there, kept whole on the item.
    (long_cell,) = rig.views.read_counters("long", "minute", minute, minute + 60, {0: "x" * 2000})
    assert long_cell.count == 1
    (grouped,) = rig.views.read_counters("long", "day", day, day + 86400, group_by=0)
    assert grouped.group == "x" * 2000

    client = make_client(rig.settings)
    try:
        ttl = client.describe_time_to_live(TableName=rig.settings.views_table)["TimeToLiveDescription"]
    finally:
        client.close()
    assert ttl["AttributeName"] == "expiresAt" and ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")


def test_reads_cover_every_slice_of_a_range_and_nothing_outside(rig: DynamoRig) -> None:
    # One fact a minute before and after each slice boundary: UTC midnight, month, year.
    moments = [
        datetime(2025, 12, 31, 23, 59, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
        datetime(2026, 1, 31, 23, 59, tzinfo=UTC),
        datetime(2026, 2, 1, 0, 1, tzinfo=UTC),
    ]
    rig.events.ingest([Event(id=f"b{i}", type="visit", occurred_at=m) for i, m in enumerate(moments)])
    rig.poller().catch_up()
    start = int(moments[0].timestamp())
    stop = int(moments[-1].timestamp()) + 60
    for resolution in ("minute", "hour", "day"):
        first, last = UTC_DAY.floor(resolution, start), UTC_DAY.floor(resolution, stop - 60)
        cells = rig.views.read_counters("type:visit", resolution, first, last + 1)
        assert [c.count for c in cells] == [1, 1, 1, 1], (resolution, cells)
        assert rig.views.read_counters("type:visit", resolution, first + 1, last) == cells[1:3]
    assert rig.views.read_counters("type:visit", "minute", start + 60, int(moments[2].timestamp())) == [
        (int(moments[1].timestamp()), None, 1, 0.0, None, None)
    ]
    # Ranges beyond 64 slices are read with one scan instead of a query per slice.
    assert slices("minute", 0, 10**9) is None
    assert sum(c.count for c in rig.views.read_counters("type:visit", "minute", 0, 10**10)) == 4
    assert slices("hour", start, stop) == ["2025-12", "2026-01", "2026-02"]
    assert slices("day", start, stop) == ["2025", "2026"]


def test_a_sum_beyond_dynamodb_numbers_reads_as_unknown_instead_of_blocking_the_shard(rig: DynamoRig) -> None:
    bucket = 1_795_000_000 - 1_795_000_000 % 86400
    for n in range(12):
        rig.views.write_batch("s", n + 1, n + 1, [GenerationChanges(cell("big", "day", bucket, 1, 9.5e27), 1)])
    # 1.14e29 + 0.123456789 needs 39 digits: DynamoDB refuses it, the cell's sum becomes unknown.
    rig.views.write_batch("s", 13, 13, [GenerationChanges(cell("big", "day", bucket, 1, 0.123456789), 1)])
    rig.views.finish_build(rig.views.begin_build(1, ["big"], [], "test", fence_seconds=0))
    (found,) = rig.views.read_counters("big", "day", bucket, bucket + 1)
    assert found.count == 13 and found.sum == math.inf


def test_guards_of_retired_shards_are_dropped_from_the_items_they_wrote(rig: DynamoRig) -> None:
    bucket = 1_795_000_000 - 1_795_000_000 % 86400
    key = ("C#n#1#day#2026", f'{bucket + 10**11:012d}#["x"]')
    rig.views.write_batch("old-shard", 5, 9, [GenerationChanges(cell("n", "day", bucket, 1, 1.0), 1)])
    assert get_item(rig, *key)["q#old-shard"] == {"S": seq_key(9)}
    rig.views.write_batch("new-shard", 1, 3, [GenerationChanges(cell("n", "day", bucket, 2, 1.0), 1)], retired={"x"})
    assert "q#old-shard" in get_item(rig, *key)
    rig.views.write_batch(
        "new-shard", 4, 6, [GenerationChanges(cell("n", "day", bucket, 1, 1.0), 1)], retired={"old-shard"}
    )
    item = get_item(rig, *key)
    assert "q#old-shard" not in item and item["q#new-shard"] == {"S": seq_key(6)} and item["n"] == {"N": "4"}


def test_text_encodings_keep_numeric_order() -> None:
    numbers = [-math.inf, -1e300, -2.5, -5e-324, -0.0, 0.0, 5e-324, 1.0, 2.5, 1e300, math.inf]
    assert sorted(numbers, key=sortable) == numbers
    sequences = [7, 42, 999, 1000, 10**20, 4421584500000000017450439091, 10**39]
    assert sorted(map(seq_key, sequences)) == [seq_key(s) for s in sequences]


def test_reading_a_metric_without_a_generation_gives_nothing(rig: DynamoRig) -> None:
    bucket = int((datetime(2026, 1, 1, tzinfo=UTC) - timedelta(hours=1)).timestamp())
    assert rig.views.read_counters("never-defined", "hour", bucket, bucket + 3600) == []
    assert rig.views.read_gauges("never-defined") == []


def counter_markers(rig: DynamoRig) -> dict[str, int]:
    """The change markers of the counters' read models (the recent-events feed has its own)."""
    return {key: v for key, v in rig.views.change_markers().items() if not key.startswith("recent:")}


def test_a_rebuild_switch_moves_the_metric_and_gauge_markers_of_every_rebuilt_name(rig: DynamoRig) -> None:
    # The rest of the markers' contract is tests/projections/test_change_markers.py.
    rig.events.ingest(shop_events(10, seed=71))
    poller = rig.poller()
    poller.catch_up()
    first = counter_markers(rig)
    assert set(first) == {PROJECTIONS_MARKER, metric_marker("type:sale"), metric_marker("type:stock_level")}

    defs.define_metric(rig.events, REVENUE)
    defs.define_gauge(rig.events, STOCK)
    poller.catch_up()  # a batch of definitions only, then the rebuild's switch
    defined = counter_markers(rig)
    assert moved(first, defined) == {PROJECTIONS_MARKER, metric_marker("revenue"), gauge_marker("stock")} | {
        metric_marker("stock"),  # a rebuilt name moves both kinds: a deleted name may have been either
        gauge_marker("revenue"),
    }

    sale = Event(id="one-more", type="sale", occurred_at=datetime(2026, 11, 21, tzinfo=UTC), properties={"amount": 1})
    rig.events.ingest([sale])
    poller.catch_up()  # a live batch writes the new generation of revenue
    assert moved(defined, counter_markers(rig)) == {
        PROJECTIONS_MARKER,
        metric_marker("type:sale"),
        metric_marker("revenue"),
    }


def moved(before: dict[str, int], after: dict[str, int]) -> set[str]:
    for key, version in before.items():
        assert after.get(key, 0) >= version, key
    return {key for key in after.keys() | before.keys() if after.get(key, 0) != before.get(key, 0)}
