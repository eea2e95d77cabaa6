"""The WSGI body of a subscription stream, with its heartbeats, and the framed push it writes.

Each open stream is a gunicorn thread pulling one chunk at a time from the subscription's
async generator on the stream's own event loop (``api.graphql_view``). A push reaches a
thousand such threads at once, so what one pull costs is multiplied by every subscriber:

- **Heartbeats live here, not in a second task.** strawberry's
  ``merge_stream_with_heartbeat`` runs the stream in a drain task and a heartbeat task
  that meet in a queue: three task steps and two queue hand-offs per push. Here the
  pending ``__anext__`` of the stream is raced against a timer on the loop itself
  (``loop.run_forever`` until the one or the other stops it): one task per chunk, and a
  heartbeat only after ``heartbeat_seconds`` without a chunk.
- **A shared push is framed once** (``shared_frame``): the live fields hand every
  subscriber of one value the same ``SharedData`` (``api.graphql_live``), so the
  transport's whole chunk (SSE ``event: next`` or the multipart part), as bytes, is built
  by the first subscriber and looked up by the rest; the WSGI layer writes bytes as they
  are. A push with errors or extensions (per subscriber) takes strawberry's own path.
- **After its first chunk a stream writes its own socket** (``api.stream_sink``) when the
  server hands it one (gunicorn): the body then stays in one ``__next__`` for the
  stream's life, writing each chunk itself, and each shared push passes through the
  sink's ``fanout`` first, where the leader of identical streams writes it to all of them
  (``api.live.ChangeWatcher``). A member of such a group is not woken per push at all.

Pure asyncio and strawberry's transport classes: no Flask here.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from strawberry.http.streaming import HTTPStreamTransport

from api.live import SharedData
from api.stream_sink import CURRENT_SINK, StreamSink


class SharedFrame(bytes):
    """The framed chunk of a shared push: the very same object for all its subscribers."""

    __slots__ = ()


def shared_frame(value: object, transport: HTTPStreamTransport, encode_json: Callable[[object], str]) -> bytes | None:
    """The framed chunk of a shared push with nothing per subscriber in it (no errors, no
    extensions), built once per transport for all subscribers; None for any other push."""
    data = getattr(value, "data", None)
    if type(data) is not SharedData or getattr(value, "errors", None) or getattr(value, "extensions", None):
        return None
    return data.encoded(
        ("frame", transport.protocol),
        lambda: SharedFrame(transport.encode_next({"data": data}, encode_json).encode()),  # type: ignore[typeddict-item]
    )


class Heartbeat:
    """What to send on a stream that has been quiet for ``seconds``, and whether to send it
    first (multipart opens with one)."""

    __slots__ = ("chunk", "initial", "seconds")

    def __init__(self, chunk: bytes, seconds: float, initial: bool) -> None:
        self.chunk = chunk
        self.seconds = seconds
        self.initial = initial


class StreamBody:
    """A WSGI body pulling chunks from an async generator on its own event loop.

    A class rather than a generator so ``close()`` runs even if the server closes the
    body before reading it; werkzeug passes gunicorn's ``close()`` on to it.

    ``peer_gone`` is asked after each chunk (a heartbeat at the latest): a client that
    closed its connection ends the stream then, without waiting for a write to fail
    (the first write after a close usually still succeeds), so cleanup takes at most one
    heartbeat.

    With a ``sink``, the first chunk goes back to the server (which sends the response
    head with it) and every later one is written through the sink by this body, inside
    one ``__next__`` that returns only when the stream ends.
    """

    def __init__(
        self,
        chunks: AsyncIterator[str | bytes],
        loop: asyncio.AbstractEventLoop,
        on_close: Callable[[], None],
        peer_gone: Callable[[], bool] | None = None,
        heartbeat: Heartbeat | None = None,
        sink: StreamSink | None = None,
    ) -> None:
        self._chunks = chunks
        self._loop = loop
        self._on_close = on_close
        self._peer_gone = peer_gone
        self._heartbeat = heartbeat
        self._initial_heartbeat = heartbeat is not None and heartbeat.initial
        self._pending: asyncio.Future[Any] | None = None
        self._waiting_for: asyncio.Future[Any] | None = None  # what a finished pull stops the loop for
        self._timed_out = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_sent = loop.time()
        self._closed = False
        self._sink = sink
        self._head_sent = False
        self._sink_gone = False
        # The stream's generator sees its sink (api.live groups streams by it).
        self._context = contextvars.copy_context()
        if sink is not None:
            self._context.run(CURRENT_SINK.set, sink)

    def __iter__(self) -> Iterator[str | bytes]:
        return self

    def __next__(self) -> str | bytes:
        if self._closed:
            raise StopIteration
        if self._initial_heartbeat:
            self._initial_heartbeat = False
            self._head_sent = True
            return self._heartbeat.chunk  # type: ignore[union-attr]
        if self._sink is not None and self._head_sent:
            self._write_until_the_end(self._sink)
            raise StopIteration
        try:
            chunk = self._next_chunk()
        except StopAsyncIteration:
            self.close()
            raise StopIteration from None
        except BaseException:
            self.close()
            raise
        if self._peer_gone is not None and self._peer_gone():
            self.close()
            raise StopIteration
        sink = self._sink
        if sink is not None and type(chunk) is SharedFrame:
            # The first push: the stream joins its fan-out group now (a leader's writes wait
            # in the sink until the server has sent this chunk with the response head).
            sink.last_frame = chunk
            fanout = sink.fanout
            if fanout is not None:
                fanout(chunk)
        self._head_sent = True
        return chunk  # type: ignore[return-value]

    def _write_until_the_end(self, sink: StreamSink) -> None:
        """Write every chunk through ``sink`` until the stream ends or its client goes."""
        sink.on_wake(self._wake_from_another_thread)
        sink.open = True
        if not sink.flush():  # what a leader wrote while the head was still on its way
            self.close()
            return
        heartbeat = self._heartbeat
        try:
            while True:
                try:
                    chunk = self._next_chunk()
                except StopAsyncIteration:
                    return
                if chunk is None:  # the sink found the client gone
                    return
                shared = type(chunk) is SharedFrame
                fanout = sink.fanout  # read once: the watcher may drop it on another thread
                if shared and fanout is not None:
                    fanout(chunk)
                if not sink.write(chunk if isinstance(chunk, bytes) else chunk.encode(), shared):
                    return
                quiet = heartbeat is not None and chunk is heartbeat.chunk
                if quiet and self._peer_gone is not None and self._peer_gone():
                    return
        finally:
            self.close()

    def _wake_from_another_thread(self) -> None:
        # RuntimeError: the stream just ended and closed its loop, so there is nothing to finish.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._sink_woke)

    def _sink_woke(self) -> None:
        # In the loop: a leader queued writes for this stream (its client is slow, or this
        # thread was writing), or found the client gone; finishing them may find it gone too.
        sink = self._sink
        if sink is not None and not sink.flush():
            self._sink_gone = True
            if self._waiting_for is not None:
                self._loop.stop()

    def _next_chunk(self) -> str | bytes | None:
        """The stream's next chunk, or the heartbeat if none comes within its interval (the
        pending pull is kept for the next call), or None if the sink found its client gone.
        Raises StopAsyncIteration at the end."""
        loop = self._loop
        pending = self._pending
        if pending is None:
            pending = self._pending = loop.create_task(self._pull(), context=self._context)
            pending.add_done_callback(self._stop_loop)
        heartbeat = self._heartbeat
        if heartbeat is not None and self._timer is None and not pending.done():
            # One timer per heartbeat interval, not one per chunk: when it fires early (a
            # chunk went out since it was set) it sets itself again for the remainder.
            self._timer = loop.call_at(self._last_sent + heartbeat.seconds, self._heartbeat_due)
        self._timed_out = False
        self._waiting_for = pending
        try:
            while not pending.done() and not self._timed_out and not self._sink_gone:
                loop.run_forever()
        finally:
            self._waiting_for = None
        if not pending.done() and self._sink_gone:
            return None
        if heartbeat is not None:
            self._last_sent = loop.time()
        if not pending.done():
            return heartbeat.chunk  # type: ignore[union-attr]
        self._pending = None
        return pending.result()

    async def _pull(self) -> str | bytes:
        return await self._chunks.__anext__()

    def _stop_loop(self, pull: object) -> None:
        # Only while waiting for that pull: a pull that finished in the loop iteration where
        # the heartbeat timer fired leaves this callback queued for a later run, which it
        # must not cut short (nor close()'s).
        if pull is self._waiting_for:
            self._loop.stop()

    def _heartbeat_due(self) -> None:
        self._timer = None
        last_sent = self._last_sent
        if self._sink is not None and self._sink.open:  # a leader's writes count as sent
            last_sent = max(last_sent, self._sink.last_write)
        due = last_sent + self._heartbeat.seconds  # type: ignore[union-attr]
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._heartbeat_due)
        elif self._waiting_for is not None:  # not while close() runs the loop
            self._timed_out = True
            self._loop.stop()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = self._loop
        if self._timer is not None:
            self._timer.cancel()
        try:
            pending, self._pending = self._pending, None
            if pending is not None and not pending.done():
                # Cancelling the pull ends the generator where it waits (its finally runs).
                pending.cancel()
                loop.run_until_complete(asyncio.wait((pending,)))
            if pending is not None and not pending.cancelled():
                pending.exception()  # retrieved: a failed last pull is not logged as never seen
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                loop.run_until_complete(aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            self._on_close()
