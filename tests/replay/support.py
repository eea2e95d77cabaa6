"""What the replay tests share: a Pulse with facts and metrics, an app to query it over
GraphQL with real keys, and the `series` answer a client sees."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask.testing import FlaskClient

from api.app import create_app
from bootstrap import Pulse
from domain import metrics as defs
from domain.clock import Clock, now_utc
from domain.events import Event
from domain.keys import create_key
from domain.settings import Settings
from tests.e2e.harness import ROOT, wait_until

REVENUE = defs.validate_metric("revenue", "sale", "sum", "amount", ["store"])
STOCK = defs.validate_gauge("stock", "stock_level", "level", "product")

SERIES = """query($from: DateTime!, $to: DateTime!) {
  series(metric: "revenue", resolution: HOUR, from: $from, to: $to) { points { bucket value count } }
}"""

PROJECTIONS = "{ projections { name state progress replayDone replayTotal etaSeconds replayError checkpoint } }"


def facts(now: datetime, count: int, first: int = 0) -> list[Event]:
    """Sales and stock levels spread over the two days before ``now``."""
    events = []
    for index in range(first, first + count):
        at = now - timedelta(minutes=(index * 7) % 2880 + 1)
        if index % 5 == 4:
            props: dict[str, Any] = {"product": f"p{index % 3}", "level": index % 40}
            events.append(Event(id=f"f{index}", type="stock_level", occurred_at=at, properties=props))
        else:
            props = {"amount": index % 50 + 0.5, "store": f"s{index % 4}"}
            events.append(Event(id=f"f{index}", type="sale", occurred_at=at, properties=props))
    return events


@dataclasses.dataclass
class Client:
    """A GraphQL client of the app serving ``pulse``, with a read and an admin key."""

    client: FlaskClient
    keys: dict[str, str]
    now: datetime

    def gql(self, query: str, key: str = "read", **variables: Any) -> dict[str, Any]:
        response = self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {self.keys[key]}"},
        )
        assert response.status_code == 200, response.data
        return response.json

    def data(self, query: str, key: str = "read", **variables: Any) -> dict[str, Any]:
        body = self.gql(query, key, **variables)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def series(self) -> list[dict[str, Any]]:
        start = (self.now - timedelta(days=3)).isoformat()
        end = (self.now + timedelta(hours=1)).isoformat()
        return self.data(SERIES, **{"from": start, "to": end})["series"]["points"]

    def projections(self) -> dict[str, dict[str, Any]]:
        return {row["name"]: row for row in self.data(PROJECTIONS)["projections"]}


def client_of(pulse: Pulse, clock: Clock) -> Client:
    keys = {scope: create_key(pulse.store, f"k-{scope}", [scope])[1] for scope in ("read", "admin")}
    app = create_app(dataclasses.replace(pulse.settings, auth=True), pulse=pulse, clock=clock)
    return Client(app.test_client(), keys, now_utc(clock))


class SeriesLoop:
    """A client querying ``series`` (or what ``ask`` asks) in a loop on its own thread,
    keeping every answer."""

    def __init__(self, client: Client, ask: Callable[[], Any] | None = None) -> None:
        self.client = client
        self.ask = ask or client.series
        self.answers: list[list[dict[str, Any]]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._answered = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self.ask()
            except BaseException as exc:  # reported by stop()
                self.errors.append(exc)
                return
            with self._answered:
                self.answers.append(answer)
                self._answered.notify_all()

    def start(self) -> SeriesLoop:
        self._thread.start()
        return self

    def wait_for_more(self) -> None:
        """Until the loop has answered once more than now (so some answers fall in between)."""
        with self._answered:
            seen = len(self.answers)
            while len(self.answers) <= seen and not self.errors:
                self._answered.wait(1.0)

    def stop(self) -> list[list[dict[str, Any]]]:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self.errors, self.errors
        return self.answers


def dynamodb_replay(settings: Settings, projection: str, batch_size: int) -> tuple[list[str], dict[str, str]]:
    """The `pulse replay` command of ``projection`` against these DynamoDB tables, and its
    environment (a 1 s lease, so that a killed run's lease soon runs out)."""
    command = [sys.executable, "-m", "cli", "replay", projection, "--store", "dynamodb"]
    command += ["--batch-size", str(batch_size), "--dynamodb-endpoint", settings.dynamodb_endpoint or ""]
    command += ["--table-prefix", settings.table_prefix]
    return command, {**os.environ, "PULSE_REPLAY_LEASE_SECONDS": "1", "PYTHONPATH": str(ROOT)}


def kill_9_midway(pulse: Pulse, projection: str, command: list[str], env: dict[str, str]) -> None:
    """Run ``command`` (a replay of ``projection``) and kill -9 it once 100 events are done."""
    ledger = pulse.backend.replay_ledger()
    replaying = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def midway() -> bool:
            status = ledger.replays().get(projection)
            return status is not None and status.state == "REPLAYING" and status.done >= 100

        wait_until(midway, "the replay to be under way", timeout=120, poll=0.05)
        os.kill(replaying.pid, signal.SIGKILL)
    finally:
        replaying.wait()
