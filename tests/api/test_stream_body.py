"""A subscription stream's WSGI body and its shared push: heartbeats only while the stream
is quiet and never at the cost of a chunk, multipart's opening heartbeat, a stream closed
mid-wait that runs its cleanup once, one framed chunk for all subscribers of a shared push
(and none for a push with errors), and a sameness decided once per pair of shared values.
Driven in-process on the body's own event loop, as gunicorn's thread drives it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from strawberry.http.streaming import MultipartSubscriptionTransport, SSETransport
from strawberry.types import ExecutionResult

from api.graphql_live import _Sameness
from api.live import SharedData
from api.stream_body import Heartbeat, StreamBody, shared_frame

PING = b": ping\r\n\r\n"


class Scripted:
    """An async stream yielding 'a', then 'b' once ``release`` is set, recording its cleanup."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.cleaned = 0

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        try:
            yield b"a"
            await self.release.wait()
            yield b"b"
        finally:
            self.cleaned += 1


def body_of(script: Scripted, heartbeat: Heartbeat | None, closed: list[int]) -> StreamBody:
    loop = asyncio.new_event_loop()
    return StreamBody(script.chunks(), loop, on_close=lambda: closed.append(1), heartbeat=heartbeat)


def test_a_quiet_stream_gets_heartbeats_and_the_next_chunk_is_not_lost() -> None:
    script, closed = Scripted(), []
    body = body_of(script, Heartbeat(PING, 0.01, initial=False), closed)

    assert next(body) == b"a"
    assert next(body) == PING  # nothing for a heartbeat interval
    assert next(body) == PING
    script.release.set()
    assert next(body) == b"b"  # the pull that was waiting across the heartbeats delivers it
    assert list(body) == []  # then the stream ends, and closing it ran the cleanup once
    assert script.cleaned == 1 and closed == [1]


def test_multipart_opens_with_a_heartbeat() -> None:
    script, closed = Scripted(), []
    body = body_of(script, Heartbeat(b"{}", 5.0, initial=True), closed)

    assert next(body) == b"{}"
    assert next(body) == b"a"
    body.close()


def test_closing_a_stream_waiting_for_a_change_runs_its_cleanup_once() -> None:
    script, closed = Scripted(), []
    body = body_of(script, Heartbeat(PING, 0.01, initial=False), closed)
    assert next(body) == b"a"
    assert next(body) == PING  # the pull is now pending inside the stream

    body.close()
    body.close()

    assert script.cleaned == 1 and closed == [1]
    assert list(body) == []


def test_a_shared_push_is_framed_once_for_every_subscriber_and_transport() -> None:
    encodes: list[object] = []

    def encode(value: object) -> str:
        encodes.append(value)
        return '{"data":{"n":1}}'

    data = SharedData({"n": 1})
    sse, multipart = SSETransport(), MultipartSubscriptionTransport()
    first = shared_frame(ExecutionResult(data=data, errors=None), sse, encode)
    again = shared_frame(ExecutionResult(data=data, errors=None), sse, encode)
    part = shared_frame(ExecutionResult(data=data, errors=None), multipart, encode)

    assert first == b'event: next\r\ndata: {"data":{"n":1}}\r\n\r\n'
    assert again is first
    assert part is not None and part.startswith(b"\r\nContent-Type: application/json") and b'"payload"' not in part
    assert len(encodes) == 2  # one per transport, not one per subscriber


def test_a_push_with_errors_extensions_or_unshared_data_is_not_framed_for_sharing() -> None:
    sse = SSETransport()
    data = SharedData({"n": 1})

    assert shared_frame(ExecutionResult(data=data, errors=[object()]), sse, str) is None  # type: ignore[list-item]
    assert shared_frame(ExecutionResult(data=data, errors=None, extensions={"cost": 1}), sse, str) is None
    assert shared_frame(ExecutionResult(data={"n": 1}, errors=None), sse, str) is None


def test_sameness_of_two_shared_values_is_decided_once_and_never_for_the_same_object() -> None:
    calls: list[tuple[object, object]] = []

    def same(a: list[int], b: list[int]) -> bool:
        calls.append((a, b))
        return a == b

    sameness = _Sameness(max_entries=4)
    old, new, equal = [1, 2], [1, 3], [1, 2]

    assert sameness(same, old, old) is True
    assert calls == []
    assert [sameness(same, new, old) for _ in range(100)] == [False] * 100
    assert sameness(same, equal, old) is True
    assert calls == [(new, old), (equal, old)]


def test_after_its_first_chunk_a_stream_with_a_sink_writes_its_own_socket_until_the_end() -> None:
    import socket

    from api.stream_sink import StreamSink

    server, client = socket.socketpair()
    script, closed = Scripted(), []
    loop = asyncio.new_event_loop()
    sink = StreamSink(server, chunked=True, share_key="text/event-stream")
    body = StreamBody(script.chunks(), loop, on_close=lambda: closed.append(1), sink=sink)

    assert next(body) == b"a"  # the server writes it, with the response head
    assert not sink.open
    script.release.set()
    assert list(body) == []  # one call: 'b' went straight to the socket, then the stream ended
    assert sink.open and script.cleaned == 1 and closed == [1]
    client.settimeout(5)
    assert client.recv(100) == b"1\r\nb\r\n"  # framed as gunicorn frames a chunked body
    # A leader that still had this stream in its list wakes it after it ended: nothing breaks.
    sink._wake_owner()  # type: ignore[misc]
    server.close()
    client.close()
