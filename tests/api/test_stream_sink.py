"""A stream's own socket as a fan-out leader writes to it: framed as gunicorn frames a body
(chunked on HTTP/1.1), never blocking the leader on a slow reader (what does not fit is
queued in order and the stream's own thread finishes it), nothing written before the
response head, a shared push never written twice, and a client that left seen as gone.
Over real socket pairs, the stream's end and the client's."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from api.stream_sink import StreamSink, chunk_framed


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def read_exactly(sock: socket.socket, size: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < size:
        more = sock.recv(size - len(data))
        assert more, "the other end closed"
        data += more
    return data


def opened(sock: socket.socket, chunked: bool = True) -> tuple[StreamSink, list[int]]:
    sink = StreamSink(sock, chunked, share_key="text/event-stream")
    wakes: list[int] = []
    sink.on_wake(lambda: wakes.append(1))
    sink.open = True
    return sink, wakes


def test_a_chunked_stream_gets_http_chunks_and_a_plain_one_the_bytes(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    chunked, _ = opened(server)
    frame = b"event: next\ndata: {}\n\n"
    chunked.offer(frame, chunk_framed(frame))
    assert read_exactly(client, len(chunk_framed(frame))) == b"16\r\n" + frame + b"\r\n"

    plain = StreamSink(server, chunked=False, share_key="text/event-stream")
    plain.open = True
    assert plain.write(b"heartbeat")
    assert read_exactly(client, 9) == b"heartbeat"


def test_one_shared_push_is_written_once_whoever_writes_it_first(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    sink, _ = opened(server, chunked=False)
    frame = b"push-1"
    sink.offer(frame, frame)
    assert sink.write(frame, shared=True)  # the stream's own thread rendered the same push
    sink.offer(frame, frame)
    assert sink.write(b"push-2", shared=True)
    assert read_exactly(client, 12) == b"push-1push-2"
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(1)  # nothing more: push-1 went out once


def test_a_slow_reader_never_blocks_the_leader_and_gets_the_push_it_started_then_the_latest(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sink, wakes = opened(server, chunked=False)
    frames = [bytes([65 + i]) * 50_000 for i in range(4)]  # far more than the buffers hold

    for frame in frames:  # returns at once although the reader reads nothing
        sink.offer(frame, frame)
    assert wakes, "the owner is woken to finish what did not fit"

    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(read_exactly(client, 100_000)))
    reader.start()
    assert sink.flush()  # the owner's thread: blocking writes of what is queued
    reader.join(10)
    # The first push had started: all of it, then the newest value; the two between, which
    # the reader was too slow for, are not queued up behind it.
    assert received == [frames[0] + frames[3]]
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(1)


def test_nothing_is_written_before_the_response_head(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    sink = StreamSink(server, chunked=False, share_key="x")
    sink.on_wake(lambda: None)
    sink.offer(b"early", b"early")  # a leader's push while the server still writes the head
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(1)

    server.sendall(b"HEAD|")  # what gunicorn writes: the head and the stream's first chunk
    sink.open = True
    assert sink.flush()
    assert read_exactly(client, 10) == b"HEAD|early"


def test_a_client_that_left_is_seen_gone_and_its_owner_woken(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    sink, wakes = opened(server, chunked=False)
    client.close()
    for _ in range(3):  # the first write after a close may still succeed
        sink.offer(bytes(10), bytes(10))
        sink.last_frame = None
    assert sink.dead and wakes
    assert not sink.write(b"more") and not sink.flush()
