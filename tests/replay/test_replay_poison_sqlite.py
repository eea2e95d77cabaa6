"""A poison event during a replay on the embedded store is parked as in live processing,
not fatal: the replay finishes and switches, and `pulse parked retry` applies the event
to the new generation exactly once.

The scenario: the counters were built live by a good release; a replay runs a release
that cannot count a sale whose amount a till sent as text (``CountsBadly``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap import Pulse, WorkerOptions, bootstrap
from cli import main
from domain import metrics as defs
from domain.access import OPEN_ACCESS
from domain.clock import FrozenClock, now_utc
from domain.errors import NotFound, ValidationError
from domain.settings import Settings
from projections.counters import PROJECTION
from services import counters as counters_service
from services.parked import ParkedService
from services.replay import ReplayProgress
from tests.contract.test_poison_events import CountsBadly, sale
from tests.projections.oracle import assert_views_match_facts
from tests.replay.support import REVENUE, STOCK, facts
from tests.support import store_args

RETRIES = 2


@pytest.fixture
def pulse(tmp_path: Path, clock: FrozenClock) -> Iterator[Pulse]:
    settings = Settings(
        store="sqlite", db=str(tmp_path / "pulse.db"), projection_retries=RETRIES, projection_retry_seconds=0
    )
    pulse = bootstrap(settings, clock=clock)
    defs.define_metric(pulse.store, REVENUE)
    defs.define_gauge(pulse.store, STOCK)
    pulse.store.ingest(facts(now_utc(clock), 300))
    pulse.store.ingest([sale("bad", "12,50", 7)])  # counted by the good release, as a sale
    pulse.store.ingest(facts(now_utc(clock), 200, first=300))
    pulse.worker().catch_up()
    yield pulse
    pulse.close()


def test_a_poison_event_in_a_replay_is_parked_the_replay_switches_and_a_retry_counts_it_once(
    pulse: Pulse, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pulse.views.event_types()["sale"] == 401
    monkeypatch.setattr(counters_service, "MetricsProjection", CountsBadly)
    monkeypatch.setattr(CountsBadly, "broken", True)
    steps: list[ReplayProgress] = []
    result = pulse.replayer(WorkerOptions(batch_size=100)).replay(PROJECTION, on_progress=steps.append)

    # The replay finished and switched; the poison event is parked under the read model's name.
    assert PROJECTION not in pulse.backend.replay_ledger().replays()  # live again: no replay, no failure
    (parked,) = pulse.parked.list()
    assert (parked.projection, parked.event_id, parked.attempts) == (PROJECTION, "bad", RETRIES + 1)
    assert "cannot count a text amount" in parked.error
    listed = CliRunner().invoke(main, ["parked", "list", *store_args(pulse.settings)])
    assert listed.exit_code == 0 and listed.output.startswith(f"{PROJECTION}\tbad\tsale\t")
    # Every fact read once: the parked one is not counted twice in the progress.
    assert result.events == 501
    assert [step.done for step in steps] == sorted(step.done for step in steps)
    assert steps[-1].done == steps[-1].total == pulse.store.last_position()
    # The new generation serves, without the parked sale (the others are all there).
    assert pulse.views.event_types()["sale"] == 400

    CountsBadly.broken = False  # the fix is deployed
    record = pulse.parked.get(PROJECTION, "bad")
    ledger = pulse.backend.replay_ledger()
    service = ParkedService(pulse.parked, pulse.backend.handlers(WorkerOptions()), ledger)
    # While another replay of the read model runs, a retry would miss its new generation: refused.
    ledger.claim(PROJECTION, "another-host-1-abc", pulse.clock.now(), 600, 0)
    with pytest.raises(ValidationError, match="a replay of 'metrics' is running"):
        service.retry(OPEN_ACCESS, PROJECTION, "bad")
    ledger.finish(PROJECTION, "another-host-1-abc")
    assert pulse.parked.get(PROJECTION, "bad") == record
    assert service.retry(OPEN_ACCESS, PROJECTION, "bad").applied
    assert pulse.views.event_types()["sale"] == 401 and pulse.parked.list() == []
    # The record's deletion lost in a crash, retried again: still counted once.
    assert record is not None
    pulse.parked.park(record)
    assert service.retry(OPEN_ACCESS, PROJECTION, "bad").applied
    assert pulse.views.event_types()["sale"] == 401
    with pytest.raises(NotFound):
        service.retry(OPEN_ACCESS, PROJECTION, "bad")
    pulse.worker().catch_up()
    assert_views_match_facts(pulse.views, pulse.store, [REVENUE], [STOCK], pulse.settings.timezone)
