"""Replays of the recent-events feed on DynamoDB Local: a new generation built from the
event store while the current one answers `recentEvents`, switched in one write,
resumed after kill -9, refused while another runs; a poison event is parked, not fatal."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bootstrap import Pulse, WorkerOptions, bootstrap, drop_tables
from domain.access import OPEN_ACCESS
from domain.clock import FrozenClock, now_utc
from domain.events import Event
from domain.ports import recent_marker
from domain.replay import ReplayRunning
from domain.settings import Settings
from projections.recent import PROJECTION
from services.parked import ParkedService
from services.replay import ReplayProgress
from storage.dynamodb_recent import encode, scope_pk, sort_key
from tests.contract.test_poison_events import FormatsAmounts
from tests.e2e.harness import ROOT, wait_until
from tests.replay.support import SeriesLoop, client_of, dynamodb_replay, facts, kill_9_midway
from tests.support import all_facts
from workers import dynamodb_recent_replay
from workers.replays import ReplayRequestWatcher

RETRIES = 2
RECENT = "{ recentEvents(limit: 30) { id } }"
SALES = '{ recentEvents(type: "sale", limit: 30) { id } }'


@pytest.fixture
def pulse(dynamodb_settings: Settings, clock: FrozenClock) -> Iterator[Pulse]:
    settings = dataclasses.replace(dynamodb_settings, projection_retries=RETRIES, projection_retry_seconds=0)
    pulse = bootstrap(settings, clock=clock, create=True)
    pulse.store.ingest(facts(now_utc(clock), 300))
    pulse.worker().catch_up()
    yield pulse
    pulse.close()
    drop_tables(settings)


def recomputed(pulse: Pulse, event_type: str | None = None, limit: int = 30) -> list[str]:
    """The feed from the event store: the newest facts by occurredAt, then id."""
    found = [f for f in all_facts(pulse.store) if event_type is None or f.type == event_type]
    return [f.id for f in sorted(found, key=lambda f: (f.occurred_micros, f.id), reverse=True)[:limit]]


def plant_a_bug_s_mark(pulse: Pulse) -> None:
    """An item no fact stands for, newest of the feed: only a replay removes it."""
    (real,) = [f for f in all_facts(pulse.store) if f.id == recomputed(pulse)[0]]
    ghost = real._replace(id="ghost")
    item = {"pk": {"S": scope_pk(0, "*")}, "sk": {"S": sort_key(ghost)}, "e": {"S": encode(ghost)}}
    pulse.backend.recent._table.batch_write([{"PutRequest": {"Item": item}}], "planting")  # type: ignore[attr-defined]


def replayer(pulse: Pulse, batch_size: int = 50) -> Any:
    return pulse.replayer(WorkerOptions(batch_size=batch_size))


def ids(client: Any, query: str = RECENT) -> list[str]:
    return [row["id"] for row in client.data(query)["recentEvents"]]


def test_readers_see_the_old_feed_during_the_replay_and_the_recomputed_one_after_the_switch(
    pulse: Pulse, clock: FrozenClock
) -> None:
    plant_a_bug_s_mark(pulse)
    client = client_of(pulse, clock)
    before = ids(client)
    assert before[0] == "ghost" and before[1:] == recomputed(pulse)[:29]
    during: list[list[str]] = []
    states: list[str] = []
    added: list[int] = []

    def query(step: ReplayProgress) -> None:
        during.append(ids(client))
        states.append(client.projections()[PROJECTION]["state"])
        if step.done and not added:  # live facts during the scan reach the new generation too
            pulse.store.ingest(facts(now_utc(clock), 5, first=10_000))
            added.append(5)
            pulse.worker().catch_up()
            before[:] = ids(client)
        loop.wait_for_more()

    loop = SeriesLoop(client, ask=lambda: ids(client)).start()
    markers = pulse.views.change_markers()
    result = replayer(pulse).replay(PROJECTION, on_progress=query)
    loop.wait_for_more()
    answers = loop.stop()

    assert result.events == 305 and len(during) >= 5
    assert all(state == "REPLAYING" for state in states)
    # Every answer during the replay is a whole answer of the serving generation (with the
    # ghost), before or after the live facts came in; after the switch, the recomputation.
    after = recomputed(pulse)
    assert all(answer[0] == "ghost" or answer == after for answer in answers)
    assert all(answer[0] == "ghost" and len(answer) == 30 for answer in during)
    assert answers[-1] == after and ids(client) == after
    assert ids(client, SALES) == recomputed(pulse, "sale")
    assert client.projections()[PROJECTION]["state"] == "LIVE"
    # `recentEventsUpdated` streams re-render at the switch: the feeds' markers moved.
    moved = pulse.views.change_markers()
    assert all(moved[recent_marker(scope)] > markers.get(recent_marker(scope), 0) for scope in ("*", "sale"))
    state = pulse.backend.recent.generations.state()  # type: ignore[attr-defined]
    assert state.gen > 0 and state.build is None

    # Live batches after the switch write the new generation.
    pulse.store.ingest(facts(now_utc(clock), 3, first=20_000))
    pulse.worker().catch_up()
    assert ids(client) == recomputed(pulse)


def test_a_second_replay_is_refused_and_a_requested_one_is_run_by_the_worker(pulse: Pulse, clock: FrozenClock) -> None:
    ledger = pulse.backend.replay_ledger()
    ledger.claim(PROJECTION, "another-host-1-abc", pulse.clock.now(), 600, 300)
    with pytest.raises(ReplayRunning, match="is running by another-host-1-abc"):
        replayer(pulse).replay(PROJECTION)
    client = client_of(pulse, clock)
    mutation = "mutation($name: String!) { replayProjection(name: $name) { name state } }"
    assert client.gql(mutation, "admin", name=PROJECTION)["errors"][0]["extensions"]["code"] == "CONFLICT"

    ledger.finish(PROJECTION, "another-host-1-abc")
    assert client.data(mutation, "admin", name=PROJECTION)["replayProjection"]["state"] == "REQUESTED"
    assert ReplayRequestWatcher(pulse, WorkerOptions()).run_pending() == [PROJECTION]
    assert client.projections()[PROJECTION]["state"] == "LIVE"
    assert pulse.backend.recent.generations.state().gen > 0  # type: ignore[attr-defined]
    assert ids(client) == recomputed(pulse)


def test_a_poison_event_is_parked_the_replay_switches_and_a_retry_applies_it_to_the_new_generation(
    pulse: Pulse, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    newest = Event(id="bad", type="sale", occurred_at=now_utc(clock), properties={"amount": "12,50"})
    pulse.store.ingest([newest])  # the newest sale; the live release took it
    pulse.worker().catch_up()
    client = client_of(pulse, clock)
    assert ids(client, SALES)[0] == "bad"
    monkeypatch.setattr(dynamodb_recent_replay, "RecentEventsProjection", FormatsAmounts)
    monkeypatch.setattr(FormatsAmounts, "broken", True)
    steps: list[ReplayProgress] = []
    result = replayer(pulse).replay(PROJECTION, on_progress=steps.append)

    (parked,) = pulse.parked.list()
    assert (parked.projection, parked.event_id, parked.attempts) == (PROJECTION, "bad", RETRIES + 1)
    assert "ValueError" in parked.error
    assert result.events == 301 and steps[-1].done == 301  # read once, parked once
    assert pulse.backend.recent.generations.state().gen > 0  # type: ignore[attr-defined]  # switched
    assert ids(client, SALES) == [i for i in recomputed(pulse, "sale", 31) if i != "bad"][:30]

    FormatsAmounts.broken = False  # the fix is deployed
    service = ParkedService(pulse.parked, pulse.backend.handlers(WorkerOptions()))
    assert service.retry(OPEN_ACCESS, PROJECTION, "bad").applied
    assert ids(client, SALES) == recomputed(pulse, "sale") and pulse.parked.list() == []
    pulse.parked.park(parked)  # the record's deletion lost in a crash: a second retry is a no-op
    assert service.retry(OPEN_ACCESS, PROJECTION, "bad").applied
    assert ids(client, SALES) == recomputed(pulse, "sale")


def test_kill_9_mid_replay_leaves_the_serving_generation_and_the_next_run_resumes_it(
    pulse: Pulse, clock: FrozenClock
) -> None:
    plant_a_bug_s_mark(pulse)
    client = client_of(pulse, clock)
    before = ids(client)
    settings = pulse.settings
    command, env = dynamodb_replay(settings, PROJECTION, batch_size=10)
    ledger = pulse.backend.replay_ledger()
    generations = pulse.backend.recent.generations  # type: ignore[attr-defined]
    kill_9_midway(pulse, PROJECTION, command, env)
    left = generations.state().build
    assert left is not None and left.done >= 100 and left.cursor is not None  # left behind, with its place
    assert ids(client) == before  # the serving generation is untouched

    wait_until(lambda: generations.state().build.lease < time.time() * 1e6, "the build's lease to expire", timeout=30)
    wait_until(lambda: ledger.replays()[PROJECTION].lease_until < time.time(), "the lease to expire", timeout=30)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    state = generations.state()
    assert state.gen == left.gen and state.build is None  # the killed build, resumed and switched
    assert ids(client) == recomputed(pulse)
