"""On DynamoDB Local, as the README's DynamoDB section runs it: `pulse serve --store
dynamodb` beside `pulse worker --store dynamodb` (the Streams poller). A posted sale is in
`recentEvents` and pushed on an open `recentEventsUpdated` stream within a second."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from bootstrap import bootstrap, create_tables, drop_tables
from domain.settings import Settings
from services import keys
from tests.e2e.harness import PULSE, ROOT, answers_health, free_port, wait_until
from tests.e2e.test_live_subscriptions import PUSH_DEADLINE, Stream, event
from tests.support import real_now
from workers.processes import stop

pytestmark = pytest.mark.serves

FEED = 'subscription { recentEventsUpdated(type: "ddb_sale", limit: 5) { id properties } }'


@dataclass
class Deployment:
    port: int
    admin: str
    url: str

    def post(self, *events: dict) -> float:
        response = requests.post(
            f"{self.url}/v1/events", json={"events": list(events)}, headers={"Authorization": f"Bearer {self.admin}"}
        )
        assert response.status_code == 202, response.text
        return time.monotonic()

    def recent(self) -> list[str]:
        body = requests.post(
            f"{self.url}/graphql",
            json={"query": '{ recentEvents(type: "ddb_sale") { id } }'},
            headers={"Authorization": f"Bearer {self.admin}"},
        ).json()
        assert "errors" not in body, body
        return [e["id"] for e in body["data"]["recentEvents"]]


@pytest.fixture
def deployment(dynamodb_settings: Settings, tmp_path: Path) -> Iterator[Deployment]:
    settings = dynamodb_settings
    create_tables(settings)
    pulse = bootstrap(settings)
    admin = keys.create(pulse.store, "ops", ["admin"])[1]
    pulse.close()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PULSE_STORE": "dynamodb",
        "PULSE_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
        "PULSE_TABLE_PREFIX": settings.table_prefix,
        "PULSE_REGION": settings.region,
        "PULSE_HEARTBEAT_SECONDS": "0.5",
    }
    port = free_port()
    processes = []
    for name, argv in (
        ("serve", ["serve", "--port", str(port), "--workers", "1"]),
        ("worker", ["worker"]),
    ):
        log = (tmp_path / f"{name}.log").open("w")
        processes.append(
            subprocess.Popen(
                [*PULSE, *argv], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert processes[0].poll() is None, (tmp_path / "serve.log").read_text()
        assert processes[1].poll() is None, (tmp_path / "worker.log").read_text()
        return answers_health(url)

    try:
        wait_until(healthy, "pulse serve on DynamoDB Local")
        yield Deployment(port, admin, url)
    finally:
        for process in processes:
            stop(process, timeout=20, group=True)
        drop_tables(settings)


def test_a_posted_sale_is_in_recent_events_and_pushed_within_a_second(deployment: Deployment) -> None:
    at = real_now().isoformat()
    deployment.post({**event("ddb_sale", 1, amount=3), "occurredAt": at})
    wait_until(lambda: deployment.recent() == ["ddb_sale-1"], "the first sale in the feed")

    stream = Stream(deployment, FEED)  # type: ignore[arg-type]  # port and admin are all it reads
    try:
        assert [e["id"] for e in stream.next()["data"]["recentEventsUpdated"]] == ["ddb_sale-1"]
        posted = deployment.post({**event("ddb_sale", 2, amount=7), "occurredAt": real_now().isoformat()})
        pushed = stream.until(lambda p: len(p["data"]["recentEventsUpdated"]) == 2, timeout=PUSH_DEADLINE + 1)
        assert time.monotonic() - posted <= PUSH_DEADLINE
        assert pushed["data"]["recentEventsUpdated"][0] == {"id": "ddb_sale-2", "properties": {"amount": 7}}
        assert deployment.recent() == ["ddb_sale-2", "ddb_sale-1"]
    finally:
        stream.close()
