"""The replay ledger (``domain.replay.ReplayLedger``) on every adapter: SQLite, DynamoDB
Local and the in-memory fake pass the same case. It is what keeps one replay of a
projection at a time across processes, and what ``projections`` reports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap import bootstrap, drop_tables
from domain.replay import FAILED, REPLAYING, REQUESTED, ReplayLedger, ReplayLost, ReplayRunning
from domain.settings import Settings
from storage.memory_replays import MemoryReplayLedger

NOW = 1_800_000_000.5


@pytest.fixture(params=["sqlite", "dynamodb", "memory"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReplayLedger]:
    if request.param == "memory":
        yield MemoryReplayLedger()
        return
    if request.param == "sqlite":
        settings = Settings(store="sqlite", db=str(tmp_path / "pulse.db"))
    else:
        settings = request.getfixturevalue("dynamodb_settings")
    pulse = bootstrap(settings, create=True)
    try:
        yield pulse.backend.replay_ledger()
    finally:
        pulse.close()
        drop_tables(settings)


def test_a_replay_is_requested_claimed_renewed_and_finished(ledger: ReplayLedger) -> None:
    assert ledger.replays() == {}
    requested = ledger.request("metrics", NOW)
    assert requested.state == REQUESTED and ledger.replays()["metrics"].requested_at == NOW
    with pytest.raises(ReplayRunning, match="was requested"):
        ledger.request("metrics", NOW + 1)

    claimed = ledger.claim("metrics", "a", NOW + 2, 30, 1000)
    assert claimed.state == REPLAYING and claimed.requested_at == NOW
    ledger.renew("metrics", "a", NOW + 3, 30, 400, 1000, 250.0)
    status = ledger.replays()["metrics"]
    assert (status.owner, status.done, status.total, status.lease_until) == ("a", 400, 1000, NOW + 33)
    assert status.progress == 0.4 and status.eta_seconds == 2.4

    ledger.finish("metrics", "a")
    assert ledger.replays() == {}


def test_a_second_owner_is_refused_until_the_lease_runs_out(ledger: ReplayLedger) -> None:
    ledger.claim("metrics", "a", NOW, 30, 10)
    with pytest.raises(ReplayRunning, match="is running by a"):
        ledger.claim("metrics", "b", NOW + 29, 30, 10)
    with pytest.raises(ReplayRunning):
        ledger.request("metrics", NOW + 29)
    ledger.claim("recent-events", "b", NOW, 30, 10)  # another projection: no conflict

    taken = ledger.claim("metrics", "b", NOW + 31, 30, 10)  # a's lease ran out (a died)
    assert taken.owner == "b"
    with pytest.raises(ReplayLost):
        ledger.renew("metrics", "a", NOW + 32, 30, 5, 10, 1.0)
    ledger.finish("metrics", "a")  # not a's any more: nothing happens
    assert ledger.replays()["metrics"].owner == "b"


def test_a_failed_replay_says_why_and_may_be_requested_again(ledger: ReplayLedger) -> None:
    ledger.claim("metrics", "a", NOW, 30, 10)
    ledger.fail("metrics", "a", "disk full", NOW + 1)
    status = ledger.replays()["metrics"]
    assert (status.state, status.error, status.progress) == (FAILED, "disk full", None)
    assert not status.held(NOW + 2)
    assert ledger.request("metrics", NOW + 2).state == REQUESTED


def test_a_replay_whose_lease_ran_out_is_reported_failed(ledger: ReplayLedger) -> None:
    ledger.claim("metrics", "a", NOW, 30, 10)
    assert ledger.replays()["metrics"].as_of(NOW + 29).state == REPLAYING
    lost = ledger.replays()["metrics"].as_of(NOW + 30)
    assert lost.state == FAILED and "lease ran out" in (lost.error or "")
