"""A subscription stream's socket, written directly, so one thread can push to a crowd.

Under gunicorn each open stream is a thread pulling its subscription's generator
(``api.stream_body``). Waking a thousand such threads for every push, each to write the
same bytes, cost most of a worker's CPU in thread switches. Once the server has sent a
stream's response head (after its first chunk), the stream owns its socket through this
sink: its own thread writes to it, and so may the *leader* of its fan-out group
(``api.live.ChangeWatcher``), which writes every shared push to all the group's sockets
while the other members' threads sleep.

Writes by another thread never block: ``send(..., MSG_DONTWAIT)``; whatever does not fit
(a slow reader, or the owner writing at that moment) is queued and the owner's thread is
woken to finish it with ordinary blocking writes, as it would have written everything
before. A push is a whole value, so a queued push not yet started is replaced by a newer
one: a reader that stopped reading costs one queued push, never a growing backlog. A
failed write marks the sink dead and wakes the owner, which ends the stream.

Pure Python sockets: no Flask, no asyncio here (the owner's wake-up is a callback).
"""

from __future__ import annotations

import contextvars
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

#: The sink of the stream whose generator runs in this context (None: no direct writes,
#: e.g. a server that is not gunicorn, or a query).
CURRENT_SINK: contextvars.ContextVar[StreamSink | None] = contextvars.ContextVar("pulse_stream_sink", default=None)


def current_sink() -> StreamSink | None:
    return CURRENT_SINK.get()


def chunk_framed(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk (what gunicorn writes for a body item)."""
    return b"%X\r\n%s\r\n" % (len(data), data)


class StreamSink:
    """The socket of one stream after its response head was sent.

    ``share_key``: the transport (its content type), which with ``chunked`` says how a
    push is framed; the live layer adds the subscription's arguments and its operation
    (``render_key``) before grouping streams that receive the very same bytes.
    """

    __slots__ = (
        "_lock",
        "_partial",
        "_pending",
        "_sock",
        "_wake_owner",
        "chunked",
        "dead",
        "fanout",
        "last_frame",
        "last_write",
        "open",
        "render_key",
        "share_key",
    )

    def __init__(self, sock: socket.socket, chunked: bool, share_key: object) -> None:
        self._sock = sock
        self.chunked = chunked
        self.share_key = share_key
        self._lock = threading.Lock()
        self._pending: deque[bytes] = deque()
        self._partial: bytes | None = None  # the unwritten end of a push a leader started
        self._wake_owner: Callable[[], None] | None = None
        #: The subscription's operation and variables (set when its first push renders).
        self.render_key: object = None
        #: Called by the owner with each shared push before writing it (set by the live
        #: layer): joins the stream's fan-out group and, when it leads, writes to the rest.
        self.fanout: Callable[[bytes], None] | None = None
        #: The response head is on the wire: from now on all writes go through here.
        self.open = False
        self.dead = False
        #: The last shared push written (or queued), as the transport framed it: a push
        #: that is this very object is not written twice.
        self.last_frame: bytes | None = None
        #: time.monotonic() of the last write: heartbeats count quiet time from it.
        self.last_write = time.monotonic()

    def on_wake(self, wake_owner: Callable[[], None]) -> None:
        """How to wake the owner's thread to finish queued writes (or see the sink dead)."""
        self._wake_owner = wake_owner

    # --- The owner's thread -------------------------------------------------------------

    def write(self, data: bytes, shared: bool = False) -> bool:
        """Write ``data`` (one body chunk) from the owner's thread, blocking; False when the
        client is gone. A shared push identical to the last one written is skipped."""
        with self._lock:
            if self.dead:
                return False
            if shared:
                if data is self.last_frame:
                    return True
                self.last_frame = data
            try:
                self._flush_locked()
                self._sock.sendall(chunk_framed(data) if self.chunked else data)
            except OSError:
                self.dead = True
                return False
            self.last_write = time.monotonic()
            return True

    def flush(self) -> bool:
        """Finish queued writes from the owner's thread; False when the client is gone."""
        with self._lock:
            if self.dead:
                return False
            try:
                self._flush_locked()
            except OSError:
                self.dead = True
                return False
            return True

    def _flush_locked(self) -> None:
        partial, self._partial = self._partial, None
        if partial is not None:
            self._sock.sendall(partial)
            self.last_write = time.monotonic()
        pending = self._pending
        while True:
            try:
                data = pending.popleft()  # taken before it is written: an offer may clear the rest
            except IndexError:
                break
            self._sock.sendall(data)
            self.last_write = time.monotonic()

    # --- Any other thread (a fan-out leader) ---------------------------------------------

    def offer(self, frame: bytes, framed: bytes) -> None:
        """Write a shared push from another thread without blocking. ``framed`` is
        ``frame`` as this sink's framing wants it (the caller frames once per push)."""
        if self.dead or frame is self.last_frame:
            return
        if not self._lock.acquire(blocking=False):
            # The owner is writing: queue, and it flushes when woken.
            self._queue(frame, framed)
            wake = True
        else:
            try:
                if frame is self.last_frame or self.dead:
                    return
                if not self.open:  # the response head is not on the wire yet: the owner flushes
                    self._queue(frame, framed)
                    return
                wake = self._send_or_queue(frame, framed)
            finally:
                self._lock.release()
        if wake and self._wake_owner is not None:
            self._wake_owner()

    def _queue(self, frame: bytes, framed: bytes) -> None:
        # A push is a whole value, so only the latest not yet started is worth writing: a
        # reader that stopped reading holds one queued push, not every push since.
        self.last_frame = frame
        self._pending.clear()
        self._pending.append(framed)

    def _send_or_queue(self, frame: bytes, framed: bytes) -> bool:
        """Under the lock: write what fits now, queue the rest; True if the owner must flush."""
        if self._partial is not None or self._pending:
            self._queue(frame, framed)
            return True
        self.last_frame = frame
        try:
            sent = self._sock.send(framed, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.dead = True
            return True
        if sent == len(framed):
            self.last_write = time.monotonic()
            return False
        if sent:  # the rest of a push that started must follow it, whatever comes later
            self._partial = framed[sent:]
        else:
            self._pending.append(framed)
        return True
