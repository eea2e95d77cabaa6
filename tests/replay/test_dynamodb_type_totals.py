"""Replays on DynamoDB Local rebuild the per-type event totals (the built-in counts'
listing, ``event_types``) into a new generation, as they rebuild every counter."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from bootstrap import Pulse, bootstrap, drop_tables
from domain import metrics as defs
from domain.clock import FrozenClock, now_utc
from domain.settings import Settings
from projections.counters import PROJECTION
from services.replay import ReplayProgress
from storage.dynamodb_view_items import TYPES_NAME, TYPES_PK
from tests.replay.support import REVENUE, STOCK, facts
from tests.replay.test_dynamodb_replay import catch_up, replayer
from tests.support import all_facts


@pytest.fixture
def pulse(dynamodb_settings: Settings, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pulse]:
    """500 facts projected, two metrics with their generations (as test_dynamodb_replay's)."""
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
