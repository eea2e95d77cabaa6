"""The change watcher behind live subscriptions: one per process per view store.

Subscribers (one per open stream, each on its own event loop and thread) register the
change markers they depend on (``ViewStore.change_markers``: ``metric:<key>``,
``gauge:<name>``, ``projections``). While anyone subscribes, one daemon thread reads
every marker in ONE call per interval (``PULSE_LIVE_INTERVAL_SECONDS``, 100 ms), diffs
the result against its last read and wakes only the subscribers of keys whose version
moved, through ``loop.call_soon_threadsafe`` on their ``asyncio.Event``. With no
subscribers left the thread stops; the next subscriber starts it again.

The markers live in the view store, so this works across processes and machines (any
writer, any reader) without an in-memory bus.

Recomputations are multiplexed as in Hasura's live queries: subscribers with identical
arguments share ONE computation per ``(arguments, token)``, where the token is the
marker versions the value was computed at plus whatever time slot the value depends on
(the current bucket of a sliding series). The first subscriber to ask computes under
the entry's lock; the others wait for its result, and a subscriber still at older
versions gets the newer result rather than recomputing the past. So N subscribers to one
metric cost one marker read per interval and one series read per change, not N.

Pushes are fanned out too: streams that write their own sockets (``api.stream_sink``) and
would receive the very same bytes (same arguments, same operation and variables, same
framing) form a group. Only its *leader* (the oldest member) is woken for a change; the
push it renders is written by its thread to every member's socket before its own, so a
crowd watching one chart costs one wake-up and one write per socket per push, not a
thread switch per subscriber. The other members still wake on their own timers (key
revalidation, heartbeats); a push they render that the leader already wrote is not
written twice. When the leader leaves, the next member leads and is woken at once, so a
change in flight is not lost.

Pure Python and asyncio: no Flask here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from api.stream_sink import StreamSink, chunk_framed
from bootstrap import Pulse
from domain.errors import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Distinct argument sets whose latest result is kept for sharing.
MAX_SHARED_RESULTS = 1024
#: Subscribers woken at a time for one change (``ChangeWatcher``'s relay).
RELAY_WIDTH = 2


class Subscriber:
    """One stream's registration: the keys it depends on and how to wake it.

    A flag and a bare future rather than an ``asyncio.Event`` awaited through
    ``asyncio.wait_for``: that costs a task and a timeout handle per wait, on every
    subscriber's loop for every push (a thousand streams, a thousand times per change)."""

    __slots__ = ("_flag", "_relay", "_waiter", "arguments", "baton", "group", "keys", "loop", "sink")

    def __init__(
        self,
        keys: frozenset[str],
        loop: asyncio.AbstractEventLoop,
        relay: Callable[[Subscriber], None] | None = None,
        sink: StreamSink | None = None,
        arguments: Hashable = None,
    ) -> None:
        self.keys = keys
        self.loop = loop
        self.sink = sink
        self.arguments = arguments
        #: The fan-out group this stream joined with its first shared push (None: on its own).
        self.group: FanoutGroup | None = None
        self._flag = False
        self._waiter: asyncio.Future[bool] | None = None
        self._relay = relay
        #: Woken as part of the watcher's relay: wakes the next one when done (``hand_on``).
        self.baton = False

    def hand_on(self) -> None:
        """This subscriber is done with its wake-up (it waits again: its push, if any, is
        written, since the stream is pulled again only then): the next subscriber in the
        watcher's relay may run."""
        if self.baton and self._relay is not None:
            self._relay(self)

    def wake(self, baton: bool = False) -> bool:
        """Called from the watcher's thread; False when the subscriber's loop is gone."""
        if baton:  # before the wake: the woken loop may hand on before this returns
            self.baton = True
        try:
            self.loop.call_soon_threadsafe(self._set)
        except RuntimeError:  # the loop was closed: the stream ended without unsubscribing yet
            self.baton = False
            return False
        return True

    def _set(self) -> None:
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def changed(self, timeout: float | None = None) -> bool:
        """Wait until woken (True) or ``timeout`` seconds pass (False)."""
        self.hand_on()
        if not self._flag:
            waiter = self._waiter = self.loop.create_future()
            timer = None if timeout is None else self.loop.call_later(max(timeout, 0.0), _expire, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        woken, self._flag = self._flag, False
        return woken


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class _Result:
    __slots__ = ("anchor", "done", "failed", "token", "value")

    def __init__(self, token: Hashable, anchor: object) -> None:
        self.token = token
        self.anchor = anchor  # keeps alive what the token names (e.g. by id)
        self.done = threading.Event()
        self.value: Any = None
        self.failed = False


class SharedResults:
    """One computation per ``(key, token)`` for every thread asking at about the same time.

    The first caller computes (outside the lock); the others wait for its result. Only
    the latest token per key is kept, in an LRU of ``max_entries`` keys. With ``covers``
    (``covers(cached, wanted)``: the cached token is at least as new), a caller asking
    for an older token than the one cached gets the newer result instead of recomputing
    the past; ``get`` returns the token the value is for. A failed computation is not
    shared: the waiters compute on their own account.
    """

    def __init__(self, max_entries: int = 1024, covers: Callable[[Hashable, Hashable], bool] | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Result] = OrderedDict()
        self._max_entries = max_entries
        self._covers = covers or (lambda cached, wanted: cached == wanted)
        self.computed = 0
        self.shared = 0

    def get(
        self, key: Hashable, token: Hashable, compute: Callable[[], T], anchor: object = None
    ) -> tuple[T, Hashable]:
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None or not self._covers(entry.token, token)
            if owner:
                entry = self._entries[key] = _Result(token, anchor)
                if len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
            else:
                self.shared += 1
            self._entries.move_to_end(key)
        assert entry is not None
        if not owner:
            entry.done.wait()
            if not entry.failed:
                return entry.value, entry.token
            return compute(), token  # the owner failed: fail (or succeed) on our own account
        try:
            entry.value = compute()
        except BaseException:
            entry.failed = True
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            raise
        finally:
            with self._lock:
                self.computed += 1
            entry.done.set()
        return entry.value, token


class SharedData(dict):
    """The ``data`` of one rendered push, the same object for all its subscribers, so
    the HTTP layer encodes each response shape that holds it once (``encoded``)."""

    __slots__ = ("_encoded", "_lock")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoded: dict[Hashable, Any] = {}
        # Reentrant: a transport's frame (api/stream_body.py) encodes the data shape inside.
        self._lock = threading.RLock()

    def encoded(self, shape: Hashable, encode: Callable[[], T]) -> T:
        with self._lock:
            if shape not in self._encoded:
                self._encoded[shape] = encode()
            return self._encoded[shape]


def covers(cached: Hashable, wanted: Hashable) -> bool:
    """For tokens that are flat tuples of versions (and time slots) that only grow: the
    cached token is the same or newer in every part."""
    if not isinstance(cached, tuple) or not isinstance(wanted, tuple) or len(cached) != len(wanted):
        return cached == wanted
    return all(a >= b for a, b in zip(cached, wanted, strict=True))


class FanoutGroup:
    """Streams receiving the very same bytes; the first member leads (see the module docstring)."""

    __slots__ = ("key", "members")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.members: dict[Subscriber, None] = {}  # in joining order

    def leader(self) -> Subscriber | None:
        return next(iter(self.members), None)


@dataclass(frozen=True, slots=True)
class WatcherStats:
    interval_seconds: float
    running: bool
    subscribers: int
    keys: int
    marker_reads: int
    marker_read_errors: int
    wakeups: int
    recomputations: int
    shared_results: int
    groups: int
    fanned_out: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "intervalSeconds": self.interval_seconds,
            "running": self.running,
            "subscribers": self.subscribers,
            "keys": self.keys,
            "markerReads": self.marker_reads,
            "markerReadErrors": self.marker_read_errors,
            "wakeups": self.wakeups,
            "recomputations": self.recomputations,
            "sharedResults": self.shared_results,
            "groups": self.groups,
            "fannedOut": self.fanned_out,
        }


class ChangeWatcher:
    """Reads change markers for every subscriber of one view store in this process.

    The subscribers of a change are woken as a relay, ``RELAY_WIDTH`` at a time: each hands
    on to the next when it waits again, its push written (``Subscriber.hand_on``; handing on
    as soon as the push was produced measured 0.45 ms of CPU per push against 0.40).
    Waking a thousand stream threads at once had them all queue for the GIL, and every
    waiter's 5 ms timed wait woke it again and again: half a worker's CPU went to switching
    threads. Serving them a couple at a time costs no latency on two cores (only one thread
    runs Python at a time anyway). If no one hands on for a whole interval (holders stuck
    writing to slow clients), the next poll wakes everyone left at once."""

    def __init__(self, read_markers: Callable[[], Mapping[str, int]], interval_seconds: float) -> None:
        self._read_markers = read_markers
        self.interval_seconds = interval_seconds
        self._lock = threading.Lock()
        self._by_key: dict[str, set[Subscriber]] = {}
        self._subscribers: set[Subscriber] = set()
        self._markers: dict[str, int] = {}
        self._read_at: float | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._values = SharedResults(MAX_SHARED_RESULTS, covers)
        # Subscribers to wake, a few at a time (see the class docstring).
        self._relay: deque[Subscriber] = deque()
        self._batons = 0  # subscribers woken from the relay that have not handed on yet
        self._relayed = 0  # wake-ups handed on, ever: the relay's progress
        self._relayed_at_poll = 0
        self.marker_reads = 0
        self.marker_read_errors = 0
        self.wakeups = 0
        self._groups: dict[Hashable, FanoutGroup] = {}
        self.fanned_out = 0  # pushes a leader wrote to another member's socket

    # --- Subscribers -------------------------------------------------------------------

    def subscribe(
        self,
        keys: Iterable[str],
        loop: asyncio.AbstractEventLoop | None = None,
        sink: StreamSink | None = None,
        arguments: Hashable = None,
    ) -> Subscriber:
        """Register for wake-ups on ``keys``; starts the polling thread if it is idle. With a
        ``sink`` (the stream writes its own socket) and the value's ``arguments``, the
        stream joins a fan-out group at its first shared push (``fan_out``)."""
        subscriber = Subscriber(frozenset(keys), loop or asyncio.get_running_loop(), self._hand_on, sink, arguments)
        if sink is not None and arguments is not None:
            sink.fanout = lambda frame: self.fan_out(subscriber, frame)
        with self._lock:
            self._subscribers.add(subscriber)
            for key in subscriber.keys:
                self._by_key.setdefault(key, set()).add(subscriber)
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="pulse-change-watcher", daemon=True)
                self._thread.start()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._drop(subscriber)
            self._wake_next()

    def _drop(self, subscriber: Subscriber) -> None:
        if subscriber.baton:
            subscriber.baton = False
            self._batons -= 1
        self._subscribers.discard(subscriber)
        if subscriber.sink is not None:
            subscriber.sink.fanout = None
        group, subscriber.group = subscriber.group, None
        if group is not None:
            leading = group.leader() is subscriber
            group.members.pop(subscriber, None)
            successor = group.leader()
            if successor is None:
                del self._groups[group.key]
            elif leading and successor.wake():  # it may have missed a change the leader was woken for
                self.wakeups += 1
        for key in subscriber.keys:
            waiting = self._by_key.get(key)
            if waiting is not None:
                waiting.discard(subscriber)
                if not waiting:
                    del self._by_key[key]

    # --- Fan-out -----------------------------------------------------------------------

    def fan_out(self, subscriber: Subscriber, frame: bytes) -> None:
        """``subscriber``'s thread is about to write the shared push ``frame``: join its
        group at the first, and when leading, write it to every other member first."""
        sink = subscriber.sink
        if sink is None:
            return
        with self._lock:
            if subscriber not in self._subscribers:
                return
            group = subscriber.group
            if group is None:
                if sink.render_key is None:
                    return  # not a rendering this layer shares: stays on its own
                key = (subscriber.arguments, sink.render_key, sink.share_key, sink.chunked)
                group = self._groups.get(key)
                if group is None:
                    group = self._groups[key] = FanoutGroup(key)
                group.members[subscriber] = None
                subscriber.group = group
            if group.leader() is not subscriber or len(group.members) == 1:
                return
            others = [member for member in group.members if member is not subscriber]
            self.fanned_out += len(others)
        framed = chunk_framed(frame) if sink.chunked else frame
        for member in others:
            member.sink.offer(frame, framed)  # type: ignore[union-attr]

    # --- Polling -----------------------------------------------------------------------

    def versions(self, keys: Iterable[str]) -> tuple[int, ...]:
        """The latest known versions of ``keys`` (sorted by key; 0: never written). When
        the thread is idle the markers may be old, so they are read first."""
        read_at = self._read_at
        if self._thread is None and (read_at is None or time.monotonic() - read_at >= self.interval_seconds):
            self.poll()
        markers = self._markers
        return tuple(markers.get(key, 0) for key in sorted(keys))

    def poll(self) -> set[str]:
        """Read the markers once, wake the subscribers of keys that moved; returns those keys."""
        try:
            markers = dict(self._read_markers())
        except StoreUnavailable as exc:
            with self._lock:
                self.marker_read_errors += 1
            log.warning("change markers unreadable, retrying: %s", exc)
            return set()
        with self._lock:
            self.marker_reads += 1
            self._read_at = time.monotonic()
            previous = self._markers
            # Versions only grow: a read that finished after a newer one cannot move them back.
            changed = {key for key, version in markers.items() if version > previous.get(key, 0)}
            if changed:
                self._markers = {**previous, **{key: markers[key] for key in changed}}
            woken: set[Subscriber] = set()
            for key in changed:
                # A group's members get its leader's push: only the leader is woken.
                woken.update(s for s in self._by_key.get(key, ()) if s.group is None or s.group.leader() is s)
            if self._relay and self._relayed == self._relayed_at_poll:
                # No one handed on for a whole interval (its holders are stuck writing to
                # slow clients): wake the rest at once, as if there were no relay.
                woken.update(self._relay)
                self._relay.clear()
                for subscriber in woken:
                    if subscriber.wake():
                        self.wakeups += 1
                    else:
                        self._drop(subscriber)
            else:
                queued = set(self._relay)
                self._relay.extend(subscriber for subscriber in woken if subscriber not in queued)
                self._wake_next()
            self._relayed_at_poll = self._relayed
        return changed

    def _hand_on(self, subscriber: Subscriber) -> None:
        """``subscriber`` (woken from the relay) is done: wake the next one in its place."""
        with self._lock:
            if subscriber.baton:
                subscriber.baton = False
                self._batons -= 1
                self._relayed += 1
            self._wake_next()

    def _wake_next(self) -> None:
        """Wake relayed subscribers until ``RELAY_WIDTH`` hold a baton. Under the lock."""
        while self._relay and self._batons < RELAY_WIDTH:
            subscriber = self._relay.popleft()
            if subscriber not in self._subscribers:
                continue
            if subscriber.baton:
                # Still busy with the last change and holding a baton (which it hands on
                # once): a plain wake so it sees this change too, and no second lane.
                if subscriber.wake():
                    self.wakeups += 1
                continue
            if subscriber.wake(baton=True):
                self._batons += 1
                self.wakeups += 1
            else:
                self._drop(subscriber)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._subscribers or self._stop.is_set():
                    # Idle: stop reading. Set under the lock so subscribe() restarts it.
                    self._thread = None
                    return
            started = time.monotonic()
            try:
                self.poll()
            except Exception:  # a bug or an unexpected store error must not kill live updates
                log.exception("change watcher poll failed")
            self._stop.wait(max(self.interval_seconds - (time.monotonic() - started), 0.0))

    def stop(self) -> None:
        """Stop the thread now (tests, shutdown); subscribing again restarts it."""
        thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None

    # --- Multiplexed results -----------------------------------------------------------

    def shared(self, arguments: Hashable, token: tuple[int, ...], compute: Callable[[], T]) -> tuple[T, Hashable]:
        """``compute()`` once per ``(arguments, token)`` for every subscriber asking; the
        others get the same result, and one asking for an older token gets the newer
        result. ``token``: the marker versions (and time slot) the value is computed at.
        Returns the value and the token it is for."""
        return self._values.get(arguments, token, compute)

    def stats(self) -> WatcherStats:
        with self._lock:
            return WatcherStats(
                interval_seconds=self.interval_seconds,
                running=self._thread is not None,
                subscribers=len(self._subscribers),
                keys=len(self._by_key),
                marker_reads=self.marker_reads,
                marker_read_errors=self.marker_read_errors,
                wakeups=self.wakeups,
                recomputations=self._values.computed,
                shared_results=self._values.shared,
                groups=len(self._groups),
                fanned_out=self.fanned_out,
            )


def watcher_for(pulse: Pulse) -> ChangeWatcher:
    """The one watcher of this Pulse's change markers (one per process)."""
    return pulse.cached(
        "watcher", lambda: ChangeWatcher(pulse.views.change_markers, pulse.settings.live_interval_seconds)
    )
