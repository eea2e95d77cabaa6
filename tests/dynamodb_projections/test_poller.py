"""The Streams poller: which shards it reads when (lineage), and `pulse worker --store
dynamodb` as a real process on DynamoDB Local, killed with SIGKILL mid-run, restarted,
stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from domain import metrics as defs
from projections.counters import PROJECTION
from storage.dynamodb_feed import Shard, order_by_lineage, sequence_number
from tests.contract.test_dynamodb_feed import expired
from tests.dynamodb_projections.conftest import DynamoRig
from tests.dynamodb_projections.test_view_store import stored_items, stream_records
from tests.projections.oracle import all_facts, assert_views_match_facts
from tests.projections.test_exactly_once import REVENUE, STOCK, shop_events
from workers.dynamodb_poller import ready_shards

ROOT = Path(__file__).resolve().parents[2]


def shard(shard_id: str, start: int, parent: str | None = None, end: int | None = None) -> Shard:
    return Shard(shard_id, parent, sequence_number(start), None if end is None else sequence_number(end))


def ids(shards: list[Shard]) -> list[str]:
    return [s.shard_id for s in shards]


def test_children_are_read_only_after_their_parent_is_finished() -> None:
    # "a" split into "b" and "c"; "c" rolled over into "d"; "x" is an unrelated root.
    listed = order_by_lineage(
        [
            shard("d", 400, "c"),
            shard("c", 300, "a", 399),
            shard("b", 200, "a", 299),
            shard("a", 100, end=199),
            shard("x", 150),
        ]
    )
    assert ids(ready_shards(listed, finished=set())) == ["a", "x"]
    assert ids(ready_shards(listed, finished={"a"})) == ["x", "b", "c"]
    assert ids(ready_shards(listed, finished={"a", "c"})) == ["x", "b", "d"]
    assert ids(ready_shards(listed, finished={"a", "b", "c", "d", "x"})) == []


def test_a_child_whose_parent_was_trimmed_is_read_at_once() -> None:
    listed = order_by_lineage([shard("orphan", 500, parent="gone-after-24h"), shard("kid", 600, "orphan")])
    assert ids(ready_shards(listed, finished=set())) == ["orphan"]
    assert ids(ready_shards(listed, finished={"orphan"})) == ["kid"]


def worker_command(rig: DynamoRig) -> list[str]:
    s = rig.settings
    return [
        *(sys.executable, "-m", "cli", "worker", "--store", "dynamodb"),
        *("--dynamodb-endpoint", s.dynamodb_endpoint or "", "--region", s.region, "--table-prefix", s.table_prefix),
        *("--batch-size", "40", "--minute-retention-days", "0", "--hour-retention-days", "0"),
        *("--rebuild-fence-seconds", "0.1", "--rebuild-settle-seconds", "0.1"),
    ]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_pulse_worker_polls_the_stream_survives_kill_9_and_stops_on_sigterm(rig: DynamoRig, tmp_path: Path) -> None:
    defs.define_metric(rig.events, REVENUE)
    (only,) = rig.feed.shards()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(log: Path) -> subprocess.Popen:
        return subprocess.Popen(worker_command(rig), env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def applied() -> int:
        return rig.views.checkpoint(PROJECTION, only.shard_id).events_total

    first = start(tmp_path / "first.log")
    try:
        wait_for(lambda: rig.views.definitions_state().version == 1, "revenue built")
        events = shop_events(160, seed=51)
        for start_at in range(0, len(events), 100):
            rig.events.ingest(events[start_at : start_at + 100])
        wait_for(lambda: applied() >= 40, "the first batches")
    finally:
        first.send_signal(signal.SIGKILL)  # mid-run: a batch may be half written
        first.wait()
    assert applied() < len(events), "killed too late to test anything"
    defs.define_gauge(rig.events, STOCK)  # defined while no worker runs: backfilled on restart

    second = start(tmp_path / "second.log")
    try:
        stored = len(all_facts(rig.events))
        wait_for(lambda: sum(rig.views.event_types().values()) == stored, "every fact counted")
        wait_for(lambda: rig.views.definitions_state().version == 2, "the gauge built")
        rig.events.ingest(shop_events(20, seed=52, prefix="live"))  # while it runs
        wait_for(lambda: sum(rig.views.event_types().values()) == stored + 20, "live facts counted")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    log = (tmp_path / "second.log").read_text()
    assert "DynamoDB Streams poller stopped" in log
    assert_views_match_facts(rig.views, rig.events, [REVENUE], [STOCK], "UTC")


def test_the_poller_renews_an_expired_iterator_and_counts_only_inserts_of_facts(rig: DynamoRig) -> None:
    rig.events.ingest(shop_events(10, seed=53))
    poller = rig.poller()
    poller.catch_up()
    (only,) = rig.feed.shards()
    reader = poller._readers[only.shard_id]
    reader._iterator = expired(reader._iterator)  # 16 minutes old, as after a long idle spell
    rig.events.ingest(shop_events(10, seed=54, prefix="after"))
    poller.catch_up()
    assert sum(rig.views.event_types().values()) == 20

    # A MODIFY (a racing resend rewrote the item) or a REMOVE of a fact changes nothing.
    records = [r for r in stream_records(rig) if r.event is not None and r.event.stream_id == "$facts"]
    before = stored_items(rig)
    rewritten = [r._replace(event_name="MODIFY") for r in records[-5:]]
    poller.apply(only.shard_id, rewritten)
    poller.apply(only.shard_id, [records[-1]._replace(event_name="REMOVE", event=None)])
    assert stored_items(rig) == before
    assert_views_match_facts(rig.views, rig.events, [], [], "UTC")
