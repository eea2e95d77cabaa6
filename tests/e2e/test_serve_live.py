"""`pulse serve` is live with one command: it runs one projection worker, which stops with
it; `pulse demo` streams into it over HTTP and numbers show up in GraphQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import PULSE, ROOT, answers_health, free_port, wait_until
from tests.support import real_now

pytestmark = pytest.mark.serves

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Server:
    def __init__(self, directory: Path, *extra: str) -> None:
        self.db = directory / "pulse.db"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = directory / "serve.log"
        self.process = subprocess.Popen(
            [*PULSE, "serve", "--port", self.url.rsplit(":", 1)[1], "--db", str(self.db), "--workers", "1", *extra],
            cwd=directory,
            env=ENV,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._healthy, f"pulse serve to start:\n{self.log.read_text()}")

    def _healthy(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        return answers_health(self.url)

    def projection_worker(self) -> int:
        found = wait_until(
            lambda: [p for p in children(self.process.pid) if " worker " in command_line(p)], "the projection worker"
        )
        assert isinstance(found, list) and len(found) == 1, found
        return found[0]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(*extra: str) -> Server:
        directory = tmp_path / f"s{len(servers)}"
        directory.mkdir()
        servers.append(Server(directory, *extra))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def gql(url: str, key: str | None, query: str) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = requests.post(f"{url}/graphql", json={"query": query}, headers=headers, timeout=10)
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def test_the_demo_streams_live_numbers_and_the_worker_stops_with_the_server(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    worker = server.projection_worker()

    options = ["--rate", "40", "--duration", "2", "--history-hours", "1", "--seed", "3", "--db", str(server.db)]
    demo = subprocess.run(
        [*PULSE, "demo", "--url", server.url, *options],
        cwd=server.db.parent,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr + demo.stdout
    assert "created admin key" in demo.stdout and "defined revenue" in demo.stdout
    header = next(line for line in demo.stdout.splitlines() if line.startswith('{"Authorization"'))
    key = json.loads(header)["Authorization"].removeprefix("Bearer ")

    def revenue_today() -> float:
        series = gql(server.url, key, '{ series(metric: "revenue", resolution: HOUR, last: 2) { points { value } } }')
        return sum(p["value"] for p in series["series"]["points"])

    assert wait_until(revenue_today, "revenue to show up")
    stock = gql(server.url, key, '{ gauges(name: "stock") { key value } }')["gauges"]
    assert stock and all(0 <= g["value"] <= 60 for g in stock)
    orders = gql(
        server.url, key, '{ breakdown(metric: "orders", dimension: "store", resolution: HOUR, last: 2) { key } }'
    )
    assert {row["key"] for row in orders["breakdown"]} <= {"downtown", "harbor", "campus"}

    # A fresh event becomes visible without anyone running anything else.
    probe = {
        "id": "probe-1",
        "type": "probe",
        "occurredAt": real_now().isoformat(),
        "properties": {},
    }
    posted = requests.post(
        f"{server.url}/v1/events", json={"events": [probe]}, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert posted.status_code == 202

    def probe_counted() -> bool:
        query = '{ series(metric: "probe", resolution: MINUTE, last: 5) { points { count } } }'
        body = requests.post(
            f"{server.url}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ).json()
        # Until the worker has seen the first "probe", its built-in metric is unknown.
        return "errors" not in body and sum(p["count"] for p in body["data"]["series"]["points"]) == 1

    wait_until(probe_counted, "the probe event")

    os.kill(server.process.pid, signal.SIGTERM)  # the server only, as Ctrl-C in a script would
    server.process.wait(timeout=30)
    wait_until(lambda: not alive(worker), "the projection worker to stop with the server")


def test_the_worker_exits_when_the_server_is_killed(start_server: Callable[..., Server]) -> None:
    server = start_server("--no-auth")
    worker = server.projection_worker()
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    wait_until(lambda: not alive(worker), "the orphaned projection worker to exit")
