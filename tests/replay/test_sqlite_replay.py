"""Replays on the embedded store: a read model rebuilt into a new generation while the
current one answers, switched in one step, resumable after kill -9, one at a time."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bootstrap import Pulse, WorkerOptions, bootstrap
from domain import metrics as defs
from domain.access import OPEN_ACCESS
from domain.clock import FrozenClock, now_utc
from domain.events import Event
from domain.replay import REPLAYING, ReplayRunning
from domain.settings import Settings
from projections.counters import PROJECTION
from services.engine import FeedBatch
from services.replay import ReplayProgress
from storage.sqlite_generations import shadow_path
from tests.projections.oracle import assert_views_match_facts
from tests.replay.support import REVENUE, STOCK, SeriesLoop, client_of, facts
from workers.replays import ReplayRequestWatcher

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pulse(tmp_path: Path, clock: FrozenClock) -> Iterator[Pulse]:
    pulse = bootstrap(Settings(store="sqlite", db=str(tmp_path / "pulse.db")), clock=clock)
    now = now_utc(clock)
    defs.define_metric(pulse.store, REVENUE)
    pulse.store.ingest(facts(now, 3000))
    defs.define_gauge(pulse.store, STOCK)  # defined after facts exist: backfilled in place
    pulse.store.ingest(facts(now, 1000, first=3000))
    pulse.worker().catch_up()
    yield pulse
    pulse.close()


def corrupt(pulse: Pulse) -> None:
    """A bug's mark on the live counters, which only a replay repairs."""
    conn = sqlite3.connect(pulse.views.path)  # type: ignore[attr-defined]
    with conn:
        conn.execute("UPDATE counters SET count = count + 1, total = total + 1000")
    conn.close()


def test_every_answer_during_a_replay_equals_the_one_before_and_the_switch_equals_a_recomputation(
    pulse: Pulse, clock: FrozenClock
) -> None:
    client = client_of(pulse, clock)
    corrupt(pulse)
    before = client.series()
    assert sum(point["count"] for point in before) > 3200  # 3,200 sales, plus the corruption
    during: list[list[dict]] = []
    states: list[dict] = []

    def query(step: ReplayProgress) -> None:
        # Between pages of the replay, as a client polling in a loop would see it.
        during.append(client.series())
        states.append(client.projections()[PROJECTION])

    result = pulse.replayer(WorkerOptions(batch_size=300)).replay(PROJECTION, on_progress=query)

    assert len(during) > 5
    assert all(answer == before for answer in during)
    assert all(state["state"] == "REPLAYING" for state in states)
    assert 0 < states[0]["progress"] < 1 and states[0]["replayDone"] < states[0]["replayTotal"]
    assert states[-1]["progress"] == 1
    assert result.pages > 5
    after = client.series()
    assert after != before
    assert client.projections()[PROJECTION]["state"] == "LIVE"
    assert_views_match_facts(pulse.views, pulse.store, [REVENUE], [STOCK], pulse.settings.timezone)
    assert not shadow_path(pulse.views.path, PROJECTION).exists()  # type: ignore[attr-defined]


def test_a_client_querying_in_a_loop_across_the_replay_and_its_switch_sees_one_answer(
    pulse: Pulse, clock: FrozenClock
) -> None:
    client = client_of(pulse, clock)
    before = client.series()
    loop = SeriesLoop(client).start()
    loop.wait_for_more()

    pulse.replayer(WorkerOptions(batch_size=300)).replay(PROJECTION, on_progress=lambda step: loop.wait_for_more())
    loop.wait_for_more()  # an answer after the switch too
    answers = loop.stop()

    assert len(answers) > 10
    assert all(answer == before for answer in answers)  # no zero, no partial sums, at no point
    assert_views_match_facts(pulse.views, pulse.store, [REVENUE], [STOCK], pulse.settings.timezone)


def test_facts_the_live_worker_projects_during_a_replay_are_in_the_new_generation(
    pulse: Pulse, clock: FrozenClock
) -> None:
    now = now_utc(clock)
    added: list[int] = []

    def ingest_and_project(step: ReplayProgress) -> None:
        if len(added) < 3:
            pulse.store.ingest(facts(now, 200, first=10_000 + 200 * len(added)))
            added.append(200)
            pulse.worker().catch_up()  # the live worker goes on beside the replay

    pulse.replayer(WorkerOptions(batch_size=500)).replay(PROJECTION, on_progress=ingest_and_project)

    assert added == [200, 200, 200]
    facts_seen = assert_views_match_facts(pulse.views, pulse.store, [REVENUE], [STOCK], pulse.settings.timezone)
    assert len(facts_seen) == 4600
    pulse.worker().catch_up()  # and the live worker carries on from the switched checkpoint
    assert_views_match_facts(pulse.views, pulse.store, [REVENUE], [STOCK], pulse.settings.timezone)


def test_a_replay_writes_no_cell_older_than_its_retention(pulse: Pulse, clock: FrozenClock) -> None:
    # A sale 30 days before the clock: within the hours' and days' retention, past the minutes'.
    old = now_utc(clock) - timedelta(days=30)
    pulse.store.ingest([Event(id="old", type="sale", occurred_at=old, properties={"amount": 7, "store": "s0"})])
    corrupt(pulse)
    pulse.replayer(WorkerOptions(batch_size=500)).replay(PROJECTION)

    def cells(resolution: str) -> list:
        start = int((old - timedelta(hours=1)).timestamp())
        return pulse.views.read_counters("revenue", resolution, start, start + 7200)

    assert cells("minute") == []
    assert [(c.count, c.sum) for c in cells("hour")] == [(1, 7.0)]
    assert sum(c.count for c in pulse.views.read_counters("revenue", "day", start_of(old), start_of(old) + 1)) == 1


def test_a_replay_recomputes_the_skipped_values(pulse: Pulse, clock: FrozenClock) -> None:
    at = now_utc(clock) - timedelta(minutes=3)
    texts = [Event(id=f"t{i}", type="sale", occurred_at=at, properties={"amount": "9.99"}) for i in range(3)]
    pulse.store.ingest(texts)
    pulse.worker().catch_up()
    assert pulse.metrics.skipped_values(OPEN_ACCESS) == {"revenue": 3}
    corrupt(pulse)  # the skipped cell too
    assert pulse.metrics.skipped_values(OPEN_ACCESS) == {"revenue": 4}
    pulse.replayer(WorkerOptions(batch_size=500)).replay(PROJECTION)
    assert pulse.metrics.skipped_values(OPEN_ACCESS) == {"revenue": 3}


def start_of(moment: datetime) -> int:
    """The start of the UTC day holding ``moment`` (the fixture's zone), in epoch seconds."""
    return int(moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())


def test_recent_events_replay_keeps_the_feed(pulse: Pulse, clock: FrozenClock) -> None:
    before = [event.id for event in pulse.recent.recent_events(None, 20)]
    pulse.replayer(WorkerOptions(batch_size=700)).replay("recent-events")
    assert [event.id for event in pulse.recent.recent_events(None, 20)] == before


def test_replay_batches_are_flagged_replay(pulse: Pulse) -> None:
    replayer = pulse.replayer(WorkerOptions(batch_size=1000))
    seen: list[FeedBatch] = []
    build = replayer.handler_for

    def spying(projection, generation):
        handler = build(projection, generation)
        handle = handler.handle

        def record(batch: FeedBatch) -> bool:
            seen.append(batch)
            return handle(batch)

        handler.handle = record
        return handler

    replayer.handler_for = spying
    replayer.replay(PROJECTION)
    assert len(seen) >= 4
    assert all(batch.replay for batch in seen)


def test_a_second_replay_of_the_same_projection_is_refused_across_processes(pulse: Pulse) -> None:
    ledger = pulse.backend.replay_ledger()
    ledger.claim(PROJECTION, "another-host-1-abc", pulse.clock.now(), 600, 4000)
    with pytest.raises(ReplayRunning, match="is running by another-host-1-abc"):
        pulse.replayer().replay(PROJECTION)

    command = [sys.executable, "-m", "cli", "replay", PROJECTION, "--db", pulse.settings.db]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "a replay of metrics is running by another-host-1-abc" in done.stderr
    assert ledger.replays()[PROJECTION].owner == "another-host-1-abc"  # untouched


def test_replay_projection_mutation_is_run_by_the_worker(pulse: Pulse, clock: FrozenClock) -> None:
    client = client_of(pulse, clock)
    mutation = "mutation($name: String!) { replayProjection(name: $name) { name state } }"
    assert client.gql(mutation, "read", name=PROJECTION)["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    unknown = client.gql(mutation, "admin", name="nope")["errors"][0]
    assert unknown["extensions"]["code"] == "BAD_USER_INPUT" and "metrics" in unknown["message"]

    assert client.data(mutation, "admin", name=PROJECTION)["replayProjection"]["state"] == "REQUESTED"
    second = client.gql(mutation, "admin", name=PROJECTION)["errors"][0]
    assert second["extensions"]["code"] == "CONFLICT" and "replay of metrics" in second["message"]
    assert client.projections()[PROJECTION]["state"] == "REQUESTED"

    corrupt(pulse)
    assert ReplayRequestWatcher(pulse, WorkerOptions()).run_pending() == [PROJECTION]
    assert client.projections()[PROJECTION]["state"] == "LIVE"
    assert_views_match_facts(pulse.views, pulse.store, [REVENUE], [STOCK], pulse.settings.timezone)


def _wait_for(predicate, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_kill_9_mid_replay_leaves_the_serving_generation_and_the_next_run_resumes(
    pulse: Pulse, clock: FrozenClock
) -> None:
    pulse.store.ingest(facts(now_utc(clock), 30_000, first=20_000))
    pulse.worker().catch_up()
    client = client_of(pulse, clock)
    corrupt(pulse)
    before = client.series()
    ledger = pulse.backend.replay_ledger()
    env = {**os.environ, "PULSE_REPLAY_LEASE_SECONDS": "1"}
    command = [sys.executable, "-m", "cli", "replay", PROJECTION, "--db", pulse.settings.db, "--batch-size", "100"]
    replaying = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def midway() -> bool:
            status = ledger.replays().get(PROJECTION)
            return status is not None and status.state == REPLAYING and status.done > 2000

        _wait_for(midway, "the replay to be under way")
        os.kill(replaying.pid, signal.SIGKILL)
    finally:
        replaying.wait()
    assert replaying.returncode == -signal.SIGKILL
    assert client.series() == before  # the serving generation is untouched
    shadow = shadow_path(pulse.views.path, PROJECTION)  # type: ignore[attr-defined]
    resumed_from = (
        sqlite3.connect(shadow)
        .execute("SELECT position FROM checkpoints WHERE projection = ?", (PROJECTION,))
        .fetchone()[0]
    )
    assert resumed_from > 0

    # The dead owner's lease runs out; the next run takes over and resumes.
    _wait_for(lambda: ledger.replays()[PROJECTION].lease_until < time.time(), "the lease to expire")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert client.series() != before
    assert_views_match_facts(pulse.views, pulse.store, [REVENUE], [STOCK], pulse.settings.timezone)
    assert PROJECTION not in ledger.replays()
