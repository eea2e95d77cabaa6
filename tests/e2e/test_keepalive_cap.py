"""End to end: `pulse serve` closes a keep-alive connection after PULSE_KEEPALIVE_REQUESTS
requests (api/keepalive.py), and a client carries on over a new connection."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import pulse_serve, run_pulse
from tests.support import real_now

pytestmark = pytest.mark.serves

CAP = 3


@pytest.fixture
def capped_server(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    db = tmp_path / "pulse.db"
    args = ("--db", str(db), "--workers", "2", "--threads", "4", "--no-worker")
    with pulse_serve(tmp_path, *args, env={"PULSE_KEEPALIVE_REQUESTS": str(CAP)}) as url:
        yield url, int(url.rsplit(":", 1)[1]), db


def _read_response(sock: socket.socket, buffered: bytes) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response (head, body by Content-Length) and what followed it."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed before a whole response head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed inside a response body"
        rest += chunk
    return head, rest[length:]


def _connection_header(head: bytes) -> str:
    return next(
        line.split(b":", 1)[1].strip().decode().lower()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"connection:")
    )


def test_the_capped_request_answers_connection_close_and_the_server_closes(
    capped_server: tuple[str, int, Path],
) -> None:
    _, port, _ = capped_server
    request = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        buffered = b""
        seen = []
        for _ in range(CAP):
            sock.sendall(request)
            head, buffered = _read_response(sock, buffered)
            assert head.startswith(b"HTTP/1.1 200 ")
            seen.append(_connection_header(head))
        assert seen == ["keep-alive"] * (CAP - 1) + ["close"]
        # The server closed its end: end of file, not a hang or another answer.
        assert buffered == b"" and sock.recv(65536) == b""


def test_a_client_keeps_ingesting_over_new_connections(capped_server: tuple[str, int, Path], tmp_path: Path) -> None:
    url, port, db = capped_server
    created = run_pulse("keys", "create", "--name", "pos", "--scope", "ingest", "--db", str(db), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}", "Content-Type": "application/json"}
    occurred = real_now().isoformat()

    def post(conn: http.client.HTTPConnection, batch: int) -> tuple[int, dict, str, bool]:
        events = [{"id": f"k-{batch}-{i}", "type": "sale", "occurredAt": occurred} for i in range(10)]
        conn.request("POST", "/v1/events", json.dumps({"events": events}), headers)
        response = conn.getresponse()
        body = json.loads(response.read())
        # http.client drops its socket after an answer saying "Connection: close" and opens a
        # new connection for the next request.
        return response.status, body, response.getheader("Connection"), conn.sock is None

    # A key created after the server started is picked up within about a second.
    deadline = time.monotonic() + 10
    warm = {"events": [{"id": "warm-up", "type": "sale", "occurredAt": occurred}]}
    while requests.post(f"{url}/v1/events", json=warm, headers=headers, timeout=5).status_code == 401:
        assert time.monotonic() < deadline, "the new key was never accepted"
        time.sleep(0.2)

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    answers = [post(conn, batch) for batch in range(3 * CAP)]
    conn.close()
    assert [status for status, _, _, _ in answers] == [202] * (3 * CAP)
    assert sum(body["accepted"] for _, body, _, _ in answers) == 3 * CAP * 10
    # Every CAP-th answer closed the connection, and the next batch went over a new one.
    assert [header for _, _, header, _ in answers] == (["keep-alive"] * (CAP - 1) + ["close"]) * 3
    assert [dropped for _, _, _, dropped in answers] == ([False] * (CAP - 1) + [True]) * 3
