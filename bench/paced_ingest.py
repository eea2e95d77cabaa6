"""A paced ingest load for bench/soak.py: POST /v1/events at a fixed rate, cheaply.

One client process holds a small pool of keep-alive connections and one selectors loop:
batch k is due at ``start + k * size / rate`` and goes out on whichever connection is free,
so a slow answer delays no later batch (a blocking client with one connection can only
send ``size / latency`` events/s, whatever it is asked). Bodies are pre-encoded: each batch
is one ``bytes.join`` of a template with a new id prefix (every event id is unique, so the
server accepts, stores and projects every one as it would a real client's) and one
``replace`` for ``occurredAt`` (now, per batch). Answers are parsed by hand: the status
line, Content-Length, Connection, and the ``accepted`` count.

The server's work per event is what any client's batch costs it; only the client's own CPU
is smaller (reported in the result, so it can be checked).
"""

from __future__ import annotations

import collections
import json
import resource
import selectors
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

ID_SLOT = b"\x00"
TIME_SLOT = b"\x01"
# The same properties as bench/ingest.py's batches: a realistic small sale.
EVENT = (
    b'{"id":"\x00-%d","type":"%s","occurredAt":"\x01","source":"pos-store-12",'
    b'"properties":{"amount":19.99,"product":"sku-1234","store":"store-12","quantity":2,"gift":false}}'
)
# A connection idle this long is replaced before use: gunicorn closes kept-alive connections
# after 2 s, and a request sent as it closes would be lost.
STALE_SECONDS = 1.5


class BatchBodies:
    """Pre-encoded POST bodies of ``size`` events of ``metric`` with unique ids."""

    def __init__(self, client: int, size: int, metric: str) -> None:
        self.client = client
        events = b",".join(EVENT % (i, metric.encode()) for i in range(size))
        self.parts = (b'{"events":[' + events + b"]}").split(ID_SLOT)

    def body(self, number: int, occurred_at: bytes) -> bytes:
        prefix = b"c%d-b%d" % (self.client, number)
        return prefix.join(self.parts).replace(TIME_SLOT, occurred_at)


def now_iso() -> bytes:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()


@dataclass
class Connection:
    sock: socket.socket | None = None
    buffer: bytes = b""
    sent_at: float = 0.0
    idle_since: float = 0.0


@dataclass
class PacedResult:
    """What one client process did; ``acked[s]``: events acknowledged in second ``s`` of the run."""

    accepted: int = 0
    errors: int = 0
    late: int = 0
    sent: int = 0
    unsent: int = 0
    first_error: str = ""
    acked: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0


def _parse(buffer: bytes) -> tuple[int, bool, bytes, bytes] | None:
    """(status, server closes, body, rest) of the first whole response in ``buffer``, or None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end].split(b"\r\n")
    status = int(head[0].split(b" ", 2)[1])
    length, closes = 0, False
    for line in head[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            closes = value.strip().lower() == b"close"
    if len(buffer) < end + 4 + length:
        return None
    body = buffer[end + 4 : end + 4 + length]
    return status, closes, body, buffer[end + 4 + length :]


def paced_ingest(
    client: int,
    port: int,
    key: str,
    metric: str,
    size: int,
    rate: float,
    connections: int,
    start: float,
    stop_at: float,
    results,
) -> None:
    """Sends batches of ``size`` on schedule from ``start`` until ``stop_at`` over at most
    ``connections`` connections; puts a :class:`PacedResult` on ``results``."""
    bodies = BatchBodies(client, size, metric)
    head = (
        b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: %d\r\n\r\n"
    )
    interval = size / rate
    result = PacedResult(acked=[0] * (int(stop_at - start) + 2))
    selector = selectors.DefaultSelector()
    idle: collections.deque[Connection] = collections.deque()
    opened = 0
    in_flight = 0
    number = 0
    due = start

    def fail(conn: Connection, why: str) -> None:
        nonlocal in_flight, opened
        result.errors += 1
        result.first_error = result.first_error or why
        drop(conn)
        in_flight -= 1

    def drop(conn: Connection) -> None:
        nonlocal opened
        if conn.sock is not None:
            selector.unregister(conn.sock)
            conn.sock.close()
            conn.sock = None
            opened -= 1

    while True:
        now = time.time()
        # Send every batch that is due, on a free connection (a new one while under the cap).
        while due <= now and due < stop_at and (idle or opened < connections):
            conn = idle.popleft() if idle else Connection()
            if conn.sock is not None and now - conn.idle_since > STALE_SECONDS:
                drop(conn)
            if conn.sock is None:
                conn.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(conn.sock, selectors.EVENT_READ, conn)
                opened += 1
            if now - due > interval:
                result.late += 1  # sent more than one interval behind its schedule
            body = bodies.body(number, now_iso())
            number += 1
            due = start + number * interval  # not a running sum: no drift over a long run
            conn.buffer, conn.sent_at = b"", now
            in_flight += 1
            try:
                conn.sock.sendall(head % len(body) + body)
                result.sent += 1
            except OSError as error:
                fail(conn, f"send: {error}")
        if now >= stop_at and not in_flight:
            break
        if now >= stop_at + 60:
            result.errors += in_flight
            result.first_error = result.first_error or f"{in_flight} answers not received 60 s after the end"
            break
        # Until the next batch is due if a connection is free for it, else until an answer.
        can_send = due < stop_at and (idle or opened < connections)
        timeout = max(0.0, due - time.time()) if can_send else 0.5
        for selected, _ in selector.select(timeout):
            conn = selected.data
            try:
                data = conn.sock.recv(65536)
            except OSError as error:
                fail(conn, f"recv: {error}")
                continue
            if not data:
                fail(conn, "the server closed the connection before answering")
                continue
            conn.buffer += data
            parsed = _parse(conn.buffer)
            if parsed is None:
                continue
            status, closes, payload, conn.buffer = parsed
            answered = time.time()
            in_flight -= 1
            if status == 202:
                accepted = json.loads(payload)["accepted"]
                result.accepted += accepted
                result.acked[min(int(answered - start), len(result.acked) - 1)] += accepted
                result.latencies.append(answered - conn.sent_at)
            else:
                result.errors += 1
                result.first_error = result.first_error or f"{status}: {payload[:200]!r}"
            if closes:
                drop(conn)  # the server's keep-alive cap: the next batch opens a new connection
            conn.idle_since = answered
            idle.append(conn)
    # Batches the schedule asked for that never went out: the client fell that far behind.
    result.unsent = max(0, int((stop_at - start) / interval) - number)
    for conn in idle:
        drop(conn)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu_seconds = usage.ru_utime + usage.ru_stime
    results.put(result)
