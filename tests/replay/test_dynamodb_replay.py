"""Replays on DynamoDB Local: every metric, gauge and built-in count rebuilt into a new
generation of the views items while the current one answers, switched in one write."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Iterator

import pytest

from bootstrap import Pulse, WorkerOptions, bootstrap, drop_tables
from domain import metrics as defs
from domain.clock import FrozenClock, now_utc
from domain.metrics import MetricDefinition, builtin_key
from domain.replay import ReplayRunning
from domain.settings import Settings
from projections.counters import PROJECTION
from services.replay import ReplayProgress
from tests.e2e.harness import ROOT, wait_until
from tests.projections.oracle import EVERYTHING, assert_views_match_facts, expected_counters
from tests.replay.support import REVENUE, STOCK, SeriesLoop, client_of, dynamodb_replay, facts, kill_9_midway
from tests.support import all_facts
from workers.dynamodb_rebuild import RebuildTiming, run_pending_rebuild
from workers.replays import ReplayRequestWatcher

QUICK = RebuildTiming(fence_seconds=0.05, settle_seconds=0.05)


@pytest.fixture
def pulse(dynamodb_settings: Settings, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pulse]:
    # One process, one clock, facts stored before the replay: no need to wait for the fence long.
    monkeypatch.setenv("PULSE_REBUILD_FENCE_SECONDS", "0.05")
    monkeypatch.setenv("PULSE_REBUILD_SETTLE_SECONDS", "0.05")
    pulse = bootstrap(dynamodb_settings, clock=clock, create=True)
    defs.define_metric(pulse.store, REVENUE)
    defs.define_gauge(pulse.store, STOCK)
    pulse.store.ingest(facts(now_utc(clock), 500))
    catch_up(pulse)
    yield pulse
    pulse.close()
    drop_tables(dynamodb_settings)


def catch_up(pulse: Pulse) -> None:
    """What the poller and its background backfills do (the metrics get their generations)."""
    projector = pulse.backend.counters()  # type: ignore[attr-defined]
    pulse.worker().catch_up()
    run_pending_rebuild(pulse.store, pulse.views, projector.bucketing, projector.history, "test", QUICK)  # type: ignore[arg-type]
    pulse.worker().catch_up()


def replayer(pulse: Pulse):
    return pulse.replayer(WorkerOptions(batch_size=100))  # pages of 100 facts


def test_every_answer_during_a_replay_equals_the_one_before_and_the_switch_equals_a_recomputation(
    pulse: Pulse, clock: FrozenClock
) -> None:
    client = client_of(pulse, clock)
    before = client.series()
    assert sum(point["count"] for point in before) == 400
    generations = pulse.views.definitions_state().generations  # type: ignore[attr-defined]
    during: list[list[dict]] = []
    states: list[dict] = []

    def query(step: ReplayProgress) -> None:
        during.append(client.series())
        states.append(client.projections()[PROJECTION])
        loop.wait_for_more()

    loop = SeriesLoop(client).start()  # and another client, in a loop across the switch
    replayer(pulse).replay(PROJECTION, on_progress=query)
    loop.wait_for_more()
    answers = loop.stop()

    assert len(during) >= 5 and len(answers) > len(during)
    assert all(answer == before for answer in answers)
    assert all(answer == before for answer in during)
    assert all(state["state"] == "REPLAYING" for state in states)
    assert any(0 < (state["progress"] or 0) < 1 for state in states)
    assert client.series() == before
    assert client.projections()[PROJECTION]["state"] == "LIVE"
    switched = pulse.views.definitions_state().generations  # type: ignore[attr-defined]
    assert switched["revenue"].gen > generations["revenue"].gen
    assert switched[builtin_key("sale")].gen == switched["revenue"].gen  # built-in counts too
    assert_views_match_facts(pulse.views, pulse.store, [REVENUE], [STOCK], pulse.settings.timezone)


def test_live_batches_during_a_replay_count_once(pulse: Pulse, clock: FrozenClock) -> None:
    added: list[int] = []

    def ingest_and_project(step: ReplayProgress) -> None:
        if step.done and len(added) < 2:  # during the scan, after the fence
            pulse.store.ingest(facts(now_utc(clock), 50, first=10_000 + 50 * len(added)))
            added.append(50)
            pulse.worker().catch_up()

    replayer(pulse).replay(PROJECTION, on_progress=ingest_and_project)
    pulse.worker().catch_up()
    assert added == [50, 50]
    stored = assert_views_match_facts(pulse.views, pulse.store, [REVENUE], [STOCK], pulse.settings.timezone)
    assert len(stored) == 600
    sales = MetricDefinition.builtin_count("sale")
    expected = expected_counters(all_facts(pulse.store), sales, pulse.settings.timezone)
    assert sum(c.count for c in pulse.views.read_counters(sales.key, "day", *EVERYTHING)) == sum(
        v[0] for k, v in expected.items() if k[0] == "day"
    )


def test_a_second_replay_is_refused_and_a_request_is_run_by_the_worker(pulse: Pulse, clock: FrozenClock) -> None:
    ledger = pulse.backend.replay_ledger()
    ledger.claim(PROJECTION, "another-host-1-abc", pulse.clock.now(), 600, 500)
    with pytest.raises(ReplayRunning, match="is running by another-host-1-abc"):
        replayer(pulse).replay(PROJECTION)
    client = client_of(pulse, clock)
    mutation = "mutation($name: String!) { replayProjection(name: $name) { name state } }"
    conflict = client.gql(mutation, "admin", name=PROJECTION)["errors"][0]
    assert conflict["extensions"]["code"] == "CONFLICT"

    ledger.finish(PROJECTION, "another-host-1-abc")
    assert client.data(mutation, "admin", name=PROJECTION)["replayProjection"]["state"] == "REQUESTED"
    assert client.projections()[PROJECTION]["state"] == "REQUESTED"
    assert ReplayRequestWatcher(pulse, WorkerOptions()).run_pending() == [PROJECTION]
    assert client.projections()[PROJECTION]["state"] == "LIVE"
    assert_views_match_facts(pulse.views, pulse.store, [REVENUE], [STOCK], pulse.settings.timezone)


def test_projections_show_each_shard_s_lag_from_the_stream_records(pulse: Pulse, clock: FrozenClock) -> None:
    client = client_of(pulse, clock)
    shards = [row for row in client.data("{ projections { name partition lagSeconds } }")["projections"]]
    assert shards and all(row["partition"] for row in shards)  # one row per shard and projection
    assert all(row["lagSeconds"] == 0.0 for row in shards)  # caught up: the last read found nothing new

    feed = pulse.worker().feed  # type: ignore[attr-defined]
    pulse.store.ingest(facts(now_utc(clock), 3, first=20_000))
    (shard,) = [shard for shard in feed.shards() if shard.ending_sequence_number is None]
    records = feed.reader(shard.shard_id, pulse.views.checkpoint(PROJECTION, shard.shard_id).position).read(10)
    assert records and all(record.created_at is not None for record in records)


def test_a_backfill_shows_as_replaying_with_progress(pulse: Pulse, clock: FrozenClock) -> None:
    from workers.backfill_progress import BackfillProgress

    client = client_of(pulse, clock)
    defs.define_metric(pulse.store, defs.validate_metric("orders", "sale", "count", None, ["store"]))
    seen: list[dict] = []
    ledger = pulse.backend.replay_ledger()

    class Watched(BackfillProgress):
        def advance(self, read: int) -> None:
            super().advance(read)
            seen.append(client.projections()[PROJECTION])

    projector = pulse.backend.counters()  # type: ignore[attr-defined]
    run_pending_rebuild(
        pulse.store,  # type: ignore[arg-type]
        pulse.views,  # type: ignore[arg-type]
        projector.bucketing,
        projector.history,
        "backfill",
        QUICK,
        page_size=100,
        progress=Watched(ledger, "backfill", clock=clock),
    )
    assert len(seen) >= 5
    assert all(row["state"] == "REPLAYING" for row in seen)
    assert 0 < seen[0]["progress"] < 1 and seen[-1]["progress"] == 1
    assert client.projections()[PROJECTION]["state"] == "LIVE"


def test_the_poller_reads_on_when_records_arrive_on_a_shard_it_first_found_empty(
    dynamodb_settings: Settings, clock: FrozenClock
) -> None:
    # DynamoDB Local refused the first read after that as trimmed, which stopped `pulse worker`.
    fresh = bootstrap(
        dataclasses.replace(dynamodb_settings, table_prefix=f"{dynamodb_settings.table_prefix}-e"), create=True
    )
    try:
        poller = fresh.worker()
        for _ in range(3):
            assert poller.step() == (0, False)
        fresh.store.ingest(facts(now_utc(clock), 4))
        assert poller.catch_up() == 4
        assert fresh.views.event_types() == {"sale": 4}
    finally:
        fresh.close()
        drop_tables(fresh.settings)


def test_kill_9_mid_replay_leaves_the_serving_generation_and_the_next_run_starts_afresh(
    pulse: Pulse, clock: FrozenClock
) -> None:
    client = client_of(pulse, clock)
    before = client.series()
    settings = pulse.settings
    command, env = dynamodb_replay(settings, PROJECTION, batch_size=20)
    ledger = pulse.backend.replay_ledger()
    kill_9_midway(pulse, PROJECTION, command, env)
    assert pulse.views.definitions_state().build is not None  # type: ignore[attr-defined]  # left behind
    assert client.series() == before  # the serving generation is untouched

    # The dead owner's leases run out; the next run starts a fresh generation and switches.
    wait_until(lambda: ledger.replays()[PROJECTION].lease_until < time.time(), "the lease to expire", timeout=30)
    left_behind = pulse.views.definitions_state  # type: ignore[attr-defined]
    wait_until(lambda: left_behind().build.lease < time.time() * 1e6, "the build's lease to expire", timeout=30)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert client.series() == before
    assert pulse.views.definitions_state().build is None  # type: ignore[attr-defined]
    assert_views_match_facts(pulse.views, pulse.store, [REVENUE], [STOCK], pulse.settings.timezone)
