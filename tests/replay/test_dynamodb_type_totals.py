"""Replays of the counters on DynamoDB Local: the per-type event totals (the built-in
counts' listing, ``event_types``) are rebuilt into the new generation as every counter, and
a poison event in the replay's scan is parked, then retried into the new generation once."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator

import pytest

from bootstrap import Pulse, WorkerOptions, bootstrap, drop_tables
from domain import metrics as defs
from domain.access import OPEN_ACCESS
from domain.clock import FrozenClock, now_utc
from domain.events import Event
from domain.settings import Settings
from projections.counters import PROJECTION, MetricsProjection
from services.parked import ParkedService
from services.replay import ReplayProgress
from storage.dynamodb_view_items import TYPES_NAME, TYPES_PK
from tests.projections.oracle import assert_views_match_facts
from tests.replay.support import REVENUE, STOCK, facts
from tests.replay.test_dynamodb_replay import catch_up, replayer
from tests.support import all_facts
from workers import dynamodb_replay, stream_projector

RETRIES = 2


@pytest.fixture
def pulse(dynamodb_settings: Settings, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pulse]:
    """500 facts projected, two metrics with their generations (as test_dynamodb_replay's)."""
    monkeypatch.setenv("PULSE_REBUILD_FENCE_SECONDS", "0.05")
    monkeypatch.setenv("PULSE_REBUILD_SETTLE_SECONDS", "0.05")
    settings = dataclasses.replace(dynamodb_settings, projection_retries=RETRIES, projection_retry_seconds=0)
    pulse = bootstrap(settings, clock=clock, create=True)
    defs.define_metric(pulse.store, REVENUE)
    defs.define_gauge(pulse.store, STOCK)
    pulse.store.ingest(facts(now_utc(clock), 500))
    catch_up(pulse)
    yield pulse
    pulse.close()
    drop_tables(dynamodb_settings)


def recount(pulse: Pulse) -> dict[str, int]:
    return dict(Counter(fact.type for fact in all_facts(pulse.store)))


def test_a_lost_or_corrupted_type_total_equals_a_recount_after_a_replay(pulse: Pulse, clock: FrozenClock) -> None:
    views = pulse.views
    assert views.event_types() == recount(pulse) == {"sale": 400, "stock_level": 100}
    table = views._table  # type: ignore[attr-defined]
    table.update(
        "corrupting a total",
        Key={"pk": {"S": TYPES_PK}, "sk": {"S": "sale"}},
        UpdateExpression="SET n = :n",
        ExpressionAttributeValues={":n": {"N": "12345"}},
    )
    table.delete_keys([{"pk": {"S": TYPES_PK}, "sk": {"S": "stock_level"}}], "losing a total")
    assert views.event_types() == {"sale": 12345}

    added: list[int] = []

    def ingest_and_project(step: ReplayProgress) -> None:
        if step.done and not added:  # during the scan, after the fence: live batches count these
            pulse.store.ingest(facts(now_utc(clock), 20, first=30_000))
            added.append(20)
            pulse.worker().catch_up()
            assert views.event_types()["sale"] == 12345 + 16  # the serving totals still answer

    replayer(pulse).replay(PROJECTION, on_progress=ingest_and_project)
    assert added == [20]
    assert views.event_types() == recount(pulse) == {"sale": 416, "stock_level": 104}
    assert views.definitions_state().generations[TYPES_NAME].gen > 0  # type: ignore[attr-defined]

    # After the switch live batches count into the new totals, once.
    pulse.store.ingest(facts(now_utc(clock), 10, first=40_000))
    pulse.worker().catch_up()
    assert views.event_types() == recount(pulse) == {"sale": 424, "stock_level": 106}
    # The replaced totals were deleted with the other replaced generations.
    assert not list(
        table.query(
            {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": TYPES_PK}}}, "reading"
        )
    )

    # A second replay moves them again, and they still equal a recount.
    replayer(pulse).replay(PROJECTION)
    assert views.event_types() == recount(pulse)


class CountsBadly(MetricsProjection):
    """The counters projection of a release that raises on one sale while ``broken``."""

    broken = True

    def project(self, events):
        if CountsBadly.broken and any(event.id == "bad" for event in events):
            raise ValueError("cannot count sale bad")
        return super().project(events)


def test_a_poison_event_in_the_replay_s_scan_is_parked_and_a_retry_counts_it_once_in_the_new_generation(
    pulse: Pulse, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = Event(id="bad", type="sale", occurred_at=now_utc(clock), properties={"amount": 12.5, "store": "s1"})
    pulse.store.ingest([bad])
    pulse.worker().catch_up()  # the live release counted it
    for module in (dynamodb_replay, stream_projector):
        monkeypatch.setattr(module, "MetricsProjection", CountsBadly)
    monkeypatch.setattr(CountsBadly, "broken", True)
    steps: list[ReplayProgress] = []
    result = replayer(pulse).replay(PROJECTION, on_progress=steps.append)

    (parked,) = pulse.parked.list()
    assert (parked.projection, parked.event_id, parked.attempts) == (PROJECTION, "bad", RETRIES + 1)
    assert result.events == steps[-1].done == 501  # every fact read once
    views = pulse.views
    assert views.definitions_state().build is None  # type: ignore[attr-defined]  # switched
    assert views.event_types() == {"sale": 400, "stock_level": 100}  # the new generation lacks it

    CountsBadly.broken = False  # the fix is deployed
    service = ParkedService(pulse.parked, pulse.backend.handlers(WorkerOptions()))
    assert service.retry(OPEN_ACCESS, PROJECTION, "bad").applied
    assert views.event_types() == recount(pulse) and pulse.parked.list() == []
    pulse.parked.park(parked)  # the record's deletion lost in a crash: retried again, counted once
    assert service.retry(OPEN_ACCESS, PROJECTION, "bad").applied
    assert views.event_types() == recount(pulse)
    assert_views_match_facts(views, pulse.store, [REVENUE], [STOCK], pulse.settings.timezone)
