"""`pulse serve --store dynamodb` runs the Streams poller beside gunicorn, as on SQLite, so
an event posted to DynamoDB (Local) shows up in GraphQL with one command; `--no-worker`
starts none (a Lambda reads the stream)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bootstrap import create_tables, drop_tables
from domain.settings import Settings
from tests.e2e.harness import PULSE, ROOT, free_port, wait_until
from tests.e2e.test_serve_live import alive, children, command_line
from tests.support import real_now

pytestmark = pytest.mark.serves


class DynamoServer:
    def __init__(self, settings: Settings, directory: Path, *extra: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = directory / "serve.log"
        store = ["--store", "dynamodb", "--dynamodb-endpoint", settings.dynamodb_endpoint or ""]
        store += ["--table-prefix", settings.table_prefix, "--region", settings.region]
        self.process = subprocess.Popen(
            [*PULSE, "serve", "--port", self.url.rsplit(":", 1)[1], "--workers", "1", "--no-auth", *store, *extra],
            cwd=directory,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._healthy, f"pulse serve to start:\n{self.log.read_text()}", timeout=60)

    def _healthy(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        try:
            return requests.get(f"{self.url}/v1/health", timeout=5).status_code == 200
        except requests.RequestException:  # not listening yet, or slow on a busy machine
            return False

    def workers(self) -> list[int]:
        return [p for p in children(self.process.pid) if " worker " in command_line(p)]

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)


@pytest.fixture
def tables(dynamodb_settings: Settings) -> Iterator[Settings]:
    create_tables(dynamodb_settings)
    yield dynamodb_settings
    drop_tables(dynamodb_settings)


def test_serve_on_dynamodb_runs_the_poller_and_numbers_show_up(tables: Settings, tmp_path: Path) -> None:
    server = DynamoServer(tables, tmp_path)
    try:
        (worker,) = wait_until(server.workers, "the Streams poller beside the server")
        assert "--store dynamodb" in command_line(worker) and tables.table_prefix in command_line(worker)
        probe = {"id": "probe-1", "type": "probe", "occurredAt": real_now().isoformat(), "properties": {}}
        assert requests.post(f"{server.url}/v1/events", json={"events": [probe]}, timeout=10).status_code == 202

        def counted() -> bool:
            query = '{ series(metric: "probe", resolution: MINUTE, last: 5) { points { count } } }'
            body = requests.post(f"{server.url}/graphql", json={"query": query}, timeout=10).json()
            return "errors" not in body and sum(p["count"] for p in body["data"]["series"]["points"]) == 1

        wait_until(counted, "the probe event to be counted", timeout=60)
    finally:
        server.stop()
    wait_until(lambda: not alive(worker), "the poller to stop with the server")


def test_serve_no_worker_starts_none(tables: Settings, tmp_path: Path) -> None:
    server = DynamoServer(tables, tmp_path, "--no-worker")
    try:
        assert server.workers() == []
        assert "no projection worker started (--no-worker)" in server.log.read_text()
    finally:
        server.stop()
