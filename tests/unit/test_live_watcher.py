"""The change watcher on its own: diffing marker reads, waking only the subscribers of
moved keys (each on its own event loop), a few at a time as a relay that cannot be stalled
for more than an interval, sharing one computation among identical subscribers, and one
polling thread that runs only while anyone subscribes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from api.live import RELAY_WIDTH, ChangeWatcher, Subscriber
from domain.errors import StoreUnavailable


class Markers:
    """What a view store's change_markers() would return, set by the test."""

    def __init__(self) -> None:
        self.current: dict[str, int] = {}
        self.fail = False

    def __call__(self) -> dict[str, int]:
        if self.fail:
            raise StoreUnavailable("views are down")
        return dict(self.current)


@pytest.fixture
def loops() -> Iterator[Callable[[], asyncio.AbstractEventLoop]]:
    made: list[asyncio.AbstractEventLoop] = []

    def make() -> asyncio.AbstractEventLoop:
        made.append(asyncio.new_event_loop())
        return made[-1]

    yield make
    for loop in made:
        loop.close()


def woken(subscriber: Subscriber) -> bool:
    """Run the subscriber's loop briefly: was it woken?"""
    return subscriber.loop.run_until_complete(subscriber.changed(0.05))


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_only_the_subscribers_of_moved_keys_are_woken(loops: Callable[[], asyncio.AbstractEventLoop]) -> None:
    markers = Markers()
    watcher = ChangeWatcher(markers, interval_seconds=60)
    sales = watcher.subscribe(["metric:type:sale"], loops())
    visits = watcher.subscribe(["metric:type:visit"], loops())
    both = watcher.subscribe(["metric:type:sale", "gauge:stock"], loops())
    watcher.stop()  # from here on, poll() is driven by hand
    base = watcher.stats()

    markers.current = {"metric:type:sale": 1, "projections": 1}
    assert watcher.poll() == {"metric:type:sale", "projections"}
    assert (woken(sales), woken(visits), woken(both)) == (True, False, True)

    markers.current["gauge:stock"] = 1
    assert watcher.poll() == {"gauge:stock"}
    assert (woken(sales), woken(visits), woken(both)) == (False, False, True)

    assert watcher.poll() == set()  # same versions: nobody
    assert (woken(sales), woken(visits), woken(both)) == (False, False, False)

    markers.current["metric:type:sale"] = 0  # a read older than the last one cannot move versions back
    assert watcher.poll() == set()
    assert watcher.versions(["metric:type:sale", "gauge:stock"]) == (1, 1)  # sorted by key
    assert watcher.versions(["metric:never"]) == (0,)

    markers.current["metric:type:visit"] = 3
    watcher.unsubscribe(visits)
    assert watcher.poll() == {"metric:type:visit"}
    assert not woken(visits)
    stats = watcher.stats()
    assert stats.subscribers == 2
    assert (stats.marker_reads - base.marker_reads, stats.wakeups - base.wakeups) == (5, 3)


def test_a_change_wakes_its_subscribers_a_few_at_a_time_each_handing_on_to_the_next(
    loops: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    markers = Markers()
    watcher = ChangeWatcher(markers, interval_seconds=60)
    subscribers = [watcher.subscribe(["metric:type:sale"], loops()) for _ in range(RELAY_WIDTH * 3)]
    watcher.stop()

    markers.current = {"metric:type:sale": 1}
    watcher.poll()
    running = [s for s in subscribers if s.baton]
    assert len(running) == RELAY_WIDTH  # not all at once: they would all wait for the GIL

    served: list[Subscriber] = []
    while running:
        for subscriber in running:
            assert woken(subscriber)  # waiting again hands on to the next one
            served.append(subscriber)
        running = [s for s in subscribers if s.baton]
    assert sorted(map(id, served)) == sorted(map(id, subscribers))  # every one, once
    assert not any(woken(s) for s in subscribers)
    assert watcher.stats().wakeups == len(subscribers)


def test_a_subscriber_still_holding_its_baton_when_the_next_change_comes_holds_one_lane(
    loops: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    markers = Markers()
    watcher = ChangeWatcher(markers, interval_seconds=60)
    first = watcher.subscribe(["gauge:stock"], loops())
    watcher.stop()
    markers.current = {"gauge:stock": 1}
    watcher.poll()
    assert first.baton
    markers.current = {"gauge:stock": 2}
    watcher.poll()  # first has not handed on yet: still one lane taken, and it is woken again
    assert woken(first)  # sees the change (and hands on)
    others = [watcher.subscribe(["gauge:stock"], loops()) for _ in range(RELAY_WIDTH)]
    watcher.stop()  # subscribing restarted the polling thread
    markers.current = {"gauge:stock": 3}
    watcher.poll()
    # Every lane is free again: all of a new change's subscribers up to the width run at once.
    assert sum(s.baton for s in [first, *others]) == RELAY_WIDTH


def test_a_relay_stuck_for_an_interval_wakes_everyone_left_at_once(
    loops: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    markers = Markers()
    watcher = ChangeWatcher(markers, interval_seconds=60)
    subscribers = [watcher.subscribe(["gauge:stock"], loops()) for _ in range(RELAY_WIDTH + 3)]
    watcher.stop()
    markers.current = {"gauge:stock": 1}
    watcher.poll()
    stuck = [s for s in subscribers if s.baton]  # e.g. writing to slow clients: never hand on
    waiting = [s for s in subscribers if not s.baton]

    watcher.poll()  # one interval later, no marker moved, and no one handed on

    assert all(woken(s) for s in waiting)
    assert all(woken(s) for s in stuck)


def test_a_subscriber_whose_loop_closed_is_dropped(loops: Callable[[], asyncio.AbstractEventLoop]) -> None:
    markers = Markers()
    watcher = ChangeWatcher(markers, interval_seconds=60)
    gone_loop = asyncio.new_event_loop()
    watcher.subscribe(["gauge:stock"], gone_loop)
    alive = watcher.subscribe(["gauge:stock"], loops())
    watcher.stop()
    gone_loop.close()
    markers.current = {"gauge:stock": 1}
    watcher.poll()
    assert woken(alive)
    assert watcher.stats().subscribers == 1


def test_an_unreadable_store_is_counted_and_retried() -> None:
    markers = Markers()
    watcher = ChangeWatcher(markers, interval_seconds=60)
    markers.fail = True
    assert watcher.poll() == set()
    markers.fail = False
    markers.current = {"projections": 2}
    assert watcher.poll() == {"projections"}
    stats = watcher.stats()
    assert (stats.marker_reads, stats.marker_read_errors) == (1, 1)


def test_subscribers_on_other_threads_wake_from_their_own_loops() -> None:
    markers = Markers()
    watcher = ChangeWatcher(markers, interval_seconds=0.01)
    received: list[int] = []
    ready = threading.Barrier(21)

    async def subscriber() -> None:
        subscription = watcher.subscribe(["metric:revenue"])
        ready.wait()
        try:
            while watcher.versions(["metric:revenue"]) < (2,):
                await subscription.changed(5.0)
            received.append(watcher.versions(["metric:revenue"])[0])
        finally:
            watcher.unsubscribe(subscription)

    threads = [threading.Thread(target=asyncio.run, args=(subscriber(),)) for _ in range(20)]
    for thread in threads:
        thread.start()
    ready.wait()
    markers.current = {"metric:revenue": 1}
    time.sleep(0.05)
    markers.current = {"metric:revenue": 2}
    for thread in threads:
        thread.join(timeout=10)
    assert received == [2] * 20


def test_one_thread_reads_while_anyone_subscribes_and_stops_when_none_do(
    loops: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    markers = Markers()
    interval = 0.02
    watcher = ChangeWatcher(markers, interval_seconds=interval)
    assert not watcher.running and watcher.stats().marker_reads == 0

    subscribers = [watcher.subscribe([f"metric:m{i % 3}"], loops()) for i in range(50)]
    assert watcher.running
    started_reads, started = watcher.stats().marker_reads, time.monotonic()
    time.sleep(0.5)
    reads, elapsed = watcher.stats().marker_reads - started_reads, time.monotonic() - started
    # One read per interval for all 50 subscribers (fewer if the machine is busy), never one each.
    assert 1 <= reads <= elapsed / interval + 2
    assert [t.name for t in threading.enumerate()].count("pulse-change-watcher") == 1

    for subscriber in subscribers:
        watcher.unsubscribe(subscriber)
    wait_until(lambda: not watcher.running)
    idle_reads = watcher.stats().marker_reads
    time.sleep(10 * interval)
    assert watcher.stats().marker_reads == idle_reads  # idle: no reads at all

    again = watcher.subscribe(["metric:m0"], loops())
    assert watcher.running
    wait_until(lambda: watcher.stats().marker_reads > idle_reads)
    watcher.unsubscribe(again)
    wait_until(lambda: not watcher.running)


def test_versions_read_the_markers_when_idle_at_most_once_per_interval() -> None:
    markers = Markers()
    markers.current = {"gauge:stock": 4}
    watcher = ChangeWatcher(markers, interval_seconds=60)
    assert watcher.versions(["gauge:stock"]) == (4,)
    markers.current = {"gauge:stock": 5}
    assert watcher.versions(["gauge:stock"]) == (4,)  # read less than an interval ago
    assert watcher.stats().marker_reads == 1


def test_identical_subscribers_share_one_computation_per_token() -> None:
    watcher = ChangeWatcher(Markers(), interval_seconds=60)
    calls: list[str] = []
    lock = threading.Lock()

    def compute(label: str) -> Callable[[], dict]:
        def run() -> dict:
            with lock:
                calls.append(label)
            time.sleep(0.05)  # long enough for every caller to arrive while it runs
            return {"value": label}

        return run

    results: list[dict] = []
    barrier = threading.Barrier(50)

    def subscriber() -> None:
        barrier.wait()
        value, token = watcher.shared(("series", "revenue", "hour"), (3, 100), compute("v3"))
        assert token == (3, 100)
        results.append(value)

    threads = [threading.Thread(target=subscriber) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["v3"]
    assert len(results) == 50 and all(result is results[0] for result in results)

    # The same token again: still shared. A new token (marker moved, or next bucket): once more.
    args = ("series", "revenue", "hour")
    assert watcher.shared(args, (3, 100), compute("again"))[0] is results[0]
    assert watcher.shared(args, (4, 100), compute("v4")) == ({"value": "v4"}, (4, 100))
    # A subscriber still at an older token gets the newer value (and its token), not a recomputation.
    assert watcher.shared(args, (3, 100), compute("the past")) == ({"value": "v4"}, (4, 100))
    assert watcher.shared(args, (4, 160), compute("next bucket"))[0] == {"value": "next bucket"}
    # Other arguments never share.
    assert watcher.shared(("series", "revenue", "day"), (4, 100), compute("day"))[0] == {"value": "day"}
    assert calls == ["v3", "v4", "next bucket", "day"]
    stats = watcher.stats()
    assert (stats.recomputations, stats.shared_results) == (4, 51)


def test_a_failed_computation_is_not_shared() -> None:
    watcher = ChangeWatcher(Markers(), interval_seconds=60)

    def broken() -> int:
        raise StoreUnavailable("down")

    with pytest.raises(StoreUnavailable):
        watcher.shared("args", (1,), broken)
    assert watcher.shared("args", (1,), lambda: 7) == (7, (1,))  # recomputed, not the cached failure


class FakeSink:
    """A stream's sink as the watcher sees it: what it renders, how it is framed, and the
    pushes a leader offered it."""

    def __init__(self, render_key: object = "{ seriesUpdated { points } }", chunked: bool = True) -> None:
        self.render_key = render_key
        self.share_key = "text/event-stream"
        self.chunked = chunked
        self.fanout: Callable[[bytes], None] | None = None
        self.offered: list[tuple[bytes, bytes]] = []

    def offer(self, frame: bytes, framed: bytes) -> None:
        self.offered.append((frame, framed))


def test_identical_streams_form_one_group_whose_leader_alone_is_woken_and_writes_for_all(
    loops: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    markers = Markers()
    watcher = ChangeWatcher(markers, interval_seconds=60)
    sinks = [FakeSink() for _ in range(4)]
    other = FakeSink(render_key="{ seriesUpdated { total } }")  # same value, another selection
    streams = [watcher.subscribe(["metric:type:sale"], loops(), sink, ("series", "sale")) for sink in sinks]
    different = watcher.subscribe(["metric:type:sale"], loops(), other, ("series", "sale"))
    watcher.stop()
    for sink in (*sinks, other):  # each writes its first push: it joins its group
        assert sink.fanout is not None
        sink.fanout(b"first")
    assert watcher.stats().groups == 2

    markers.current = {"metric:type:sale": 1}
    watcher.poll()
    while any(woken(s) for s in streams if s.baton):  # let the relay run
        pass
    assert [woken(s) for s in streams] == [False] * 4  # nobody is still due a wake-up
    assert watcher.stats().wakeups == 2  # the two leaders, not the five streams

    sinks[0].fanout(b"push")  # the leader writes the push to the three others first
    assert [sink.offered for sink in sinks] == [[], *[[(b"push", b"4\r\npush\r\n")]] * 3]
    sinks[1].fanout(b"push")  # a member writing the same push (its own timer woke it): no one else gets it again
    assert [len(sink.offered) for sink in sinks] == [0, 1, 1, 1]
    assert other.offered == [] and watcher.stats().fanned_out == 3
    watcher.unsubscribe(different)


def test_when_the_leader_leaves_the_next_member_leads_and_is_woken_at_once(
    loops: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    watcher = ChangeWatcher(Markers(), interval_seconds=60)
    sinks = [FakeSink(chunked=False) for _ in range(3)]
    streams = [watcher.subscribe(["gauge:stock"], loops(), sink, ("gauge", "stock")) for sink in sinks]
    watcher.stop()
    for sink in sinks:
        sink.fanout(b"first")  # type: ignore[misc]

    watcher.unsubscribe(streams[0])
    # It may have been woken for a change it will never push: the successor re-checks now.
    assert woken(streams[1]) and not woken(streams[2])
    assert sinks[0].fanout is None
    sinks[1].fanout(b"next")  # type: ignore[misc]
    assert (sinks[0].offered, sinks[1].offered, sinks[2].offered) == ([], [], [(b"next", b"next")])

    watcher.unsubscribe(streams[1])
    watcher.unsubscribe(streams[2])
    assert watcher.stats().groups == 0


def test_a_stream_whose_pushes_are_not_shared_renderings_stays_on_its_own(
    loops: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    markers = Markers()
    watcher = ChangeWatcher(markers, interval_seconds=60)
    sinks = [FakeSink(render_key=None) for _ in range(2)]  # no shared rendering (e.g. an async field)
    streams = [watcher.subscribe(["metric:type:sale"], loops(), sink, ("series", "sale")) for sink in sinks]
    plain = watcher.subscribe(["metric:type:sale"], loops())  # no sink: the server writes for it
    watcher.stop()
    for sink in sinks:
        sink.fanout(b"first")  # type: ignore[misc]
    assert watcher.stats().groups == 0

    markers.current = {"metric:type:sale": 1}
    watcher.poll()
    woke: set[Subscriber] = set()
    for _ in range(5):  # the relay: each hands on when it waits again
        woke.update(s for s in (*streams, plain) if woken(s))
    assert woke == {*streams, plain}
