"""The recent-events read model on every backend, through its real worker: newest first by
occurredAt then id, per type and overall, the newest ``keep`` kept, a redelivered or
resent fact counted once, and its change markers moving only for the feeds it changed."""

from __future__ import annotations

from datetime import timedelta

from bootstrap import Pulse, WorkerOptions
from domain.events import Event
from domain.ports import ALL_TYPES, recent_marker
from projections.recent import RecentEventsProjection
from services.engine import FeedBatch, ReadModelHandler
from tests.support import all_facts, real_now

NOW = real_now().replace(microsecond=0)


def sale(i: int, minutes_ago: float) -> Event:
    return Event(id=f"s{i:03d}", type="sale", occurred_at=NOW - timedelta(minutes=minutes_ago), properties={"n": i})


def catch_up(pulse: Pulse) -> None:
    worker = pulse.worker(WorkerOptions(batch_size=7))
    worker.catch_up()


def test_the_feed_is_newest_first_per_type_and_overall_late_events_in_their_place(pulse: Pulse) -> None:
    pulse.store.ingest([sale(i, minutes_ago=10 - i) for i in range(5)])
    pulse.store.ingest([Event(id="v1", type="visit", occurred_at=NOW - timedelta(minutes=2), properties={})])
    pulse.store.ingest([sale(99, minutes_ago=30)])  # late: older than every other sale
    pulse.store.ingest([sale(1, minutes_ago=10 - 1)])  # a resend: stored once, listed once
    catch_up(pulse)

    assert [e.id for e in pulse.recent.recent_events("sale", 10)] == ["s004", "s003", "s002", "s001", "s000", "s099"]
    assert [e.id for e in pulse.recent.recent_events(None, 3)] == ["v1", "s004", "s003"]
    assert pulse.recent.recent_events("visit", 5)[0].type == "visit"
    assert pulse.recent.recent_events("nothing", 5) == []
    newest = pulse.recent.recent_events("sale", 1)[0]
    assert newest.properties == {"n": 4} and newest.occurred_at == NOW - timedelta(minutes=6)


def test_ties_on_occurred_at_are_ordered_by_id(pulse: Pulse) -> None:
    at = NOW - timedelta(minutes=1)
    pulse.store.ingest([Event(id=i, type="sale", occurred_at=at, properties={}) for i in ("b", "c", "a")])
    catch_up(pulse)
    assert [e.id for e in pulse.recent.recent_events("sale", 5)] == ["c", "b", "a"]


def test_only_the_newest_are_kept_and_a_redelivered_batch_changes_nothing(pulse: Pulse) -> None:
    keep = 12
    pulse.store.ingest([sale(i, minutes_ago=100 - i) for i in range(30)])
    facts = [f._replace(position=i + 1) for i, f in enumerate(all_facts(pulse.store))]
    store = pulse.backend.recent
    store.keep = keep
    if hasattr(store, "trim_every"):
        store.trim_every = 1
    handler = ReadModelHandler(RecentEventsProjection(keep=keep), store)
    positions = [f.position or 0 for f in facts]
    batch = FeedBatch("p1", min(positions), max(positions), facts)
    markers = pulse.views.change_markers()
    assert handler.handle(batch) is True
    moved = pulse.views.change_markers()
    assert moved[recent_marker("sale")] > markers.get(recent_marker("sale"), 0)
    assert moved[recent_marker(ALL_TYPES)] > markers.get(recent_marker(ALL_TYPES), 0)
    assert recent_marker("visit") not in moved

    fresh = ReadModelHandler(RecentEventsProjection(keep=keep), store)  # as after a restart
    assert fresh.handle(batch) is False  # redelivered: nothing applied, nothing moved
    assert pulse.views.change_markers() == moved
    listed = store.recent_events("sale", 100)
    assert [e.id for e in listed] == [f"s{i:03d}" for i in range(29, 29 - keep, -1)]
