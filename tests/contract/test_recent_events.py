"""The recent-events read model on every backend, through its real worker: newest first by
occurredAt then id, per type and overall, the newest ``keep`` kept, a redelivered or
resent fact counted once, and its change markers moving only for the feeds it changed."""

from __future__ import annotations

import random
import sqlite3
from datetime import timedelta

from bootstrap import Pulse, WorkerOptions
from domain.events import Event
from domain.ports import ALL_TYPES, recent_marker
from projections.recent import RecentEventsProjection
from services.engine import FeedBatch, ReadModelHandler
from storage.sqlite_recent import SqliteRecentEvents
from storage.sqlite_views import SqliteViewStore
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


def newest_ids(sent: list[Event], etype: str | None, limit: int) -> list[str]:
    chosen = [e for e in sent if etype is None or e.type == etype]
    return [e.id for e in sorted(chosen, key=lambda e: (e.occurred_at, e.id), reverse=True)[:limit]]


def test_many_small_batches_with_late_facts_list_exactly_the_newest(pulse: Pulse) -> None:
    """Small batches, facts arriving out of time order and two types interleaved: the feed
    always equals the newest ``keep`` by (occurredAt, id), per type and overall."""
    keep = 12
    store = pulse.backend.recent
    store.keep = keep
    if hasattr(store, "trim_every"):
        store.trim_every = 1
    handler = ReadModelHandler(RecentEventsProjection(keep=keep), store)
    rng = random.Random(11)
    minutes = list(range(90))
    rng.shuffle(minutes)
    sent: list[Event] = []
    for start in range(0, len(minutes), 3):  # 30 batches of 3, each fed once
        batch = [
            Event(id=f"f{m:03d}", type="sale" if m % 3 else "visit", occurred_at=NOW - timedelta(minutes=m))
            for m in minutes[start : start + 3]
        ]
        pulse.store.ingest(batch)
        sent += batch
        ids = {e.id for e in batch}  # a log without one global order lists facts in any order
        facts = sorted((f for f in all_facts(pulse.store) if f.id in ids), key=lambda f: f.id)
        facts = [f._replace(position=start + i + 1) for i, f in enumerate(facts)]
        assert handler.handle(FeedBatch("p", start + 1, start + 3, facts)) is True

        for etype in (None, "sale", "visit"):
            for limit in (1, 5, keep):
                assert [e.id for e in store.recent_events(etype, limit)] == newest_ids(sent, etype, limit), (
                    start,
                    etype,
                )


def test_a_views_file_with_one_row_per_fact_keeps_its_feed_when_opened(tmp_path) -> None:
    """Views files made before blocks hold ``recent_events`` rows: opening one moves each
    scope's newest into a block, and the feed lists what it listed before."""
    path = tmp_path / "pulse.views.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE recent_events (scope TEXT NOT NULL, occurred_at INTEGER NOT NULL, id TEXT NOT NULL,"
        " type TEXT NOT NULL, received_at INTEGER NOT NULL, source TEXT, properties TEXT NOT NULL,"
        " position INTEGER, PRIMARY KEY (scope, occurred_at, id)) WITHOUT ROWID;"
    )
    at = 1_700_000_000_000_000
    rows = [
        (scope, at + i, f"s{i}", "sale", at, None, f'{{"n":{i}}}', i + 1) for i in range(5) for scope in ("*", "sale")
    ]
    conn.executemany("INSERT INTO recent_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()

    views = SqliteViewStore(path)
    feed = SqliteRecentEvents(views)
    listed = feed.recent_events("sale", 3)
    assert [(e.id, e.properties, e.position) for e in listed] == [
        ("s4", {"n": 4}, 5),
        ("s3", {"n": 3}, 4),
        ("s2", {"n": 2}, 3),
    ]
    assert [e.id for e in feed.recent_events(None, 10)] == ["s4", "s3", "s2", "s1", "s0"]
    SqliteRecentEvents(views)  # a second open finds nothing left to move
    assert [e.id for e in feed.recent_events(None, 10)] == ["s4", "s3", "s2", "s1", "s0"]
    views.close()


def test_batches_of_two_partitions_ending_at_the_same_position_both_stay_listed(pulse: Pulse) -> None:
    """A parked event's retry is applied through its own partition, up to its own position,
    which a batch of the live partition may also have ended at: neither replaces the other."""
    store = pulse.backend.recent
    handler = ReadModelHandler(RecentEventsProjection(), store)
    pulse.store.ingest([sale(1, minutes_ago=3), sale(2, minutes_ago=2)])
    first, second = sorted(all_facts(pulse.store), key=lambda f: f.id)
    assert handler.handle(FeedBatch("", 5, 5, [first._replace(position=5)])) is True
    assert handler.handle(FeedBatch("retry", 5, 5, [second._replace(position=5)])) is True
    assert [e.id for e in store.recent_events("sale", 10)] == ["s002", "s001"]
