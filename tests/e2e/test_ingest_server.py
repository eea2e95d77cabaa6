"""End to end: a real `pulse serve` (gunicorn) on a free port, a key from the real CLI,
events over real HTTP."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import pulse_serve, run_pulse
from tests.support import real_now

pytestmark = pytest.mark.serves


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "pulse.db"
    with pulse_serve(tmp_path, "--db", str(db), "--workers", "1", "--threads", "4") as url:
        yield url, db


def test_events_posted_to_a_running_server_with_a_cli_key(server: tuple[str, Path], tmp_path: Path) -> None:
    url, db = server
    created = run_pulse("keys", "create", "--name", "pos-store-12", "--scope", "ingest", "--db", str(db), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]

    occurred = real_now().isoformat()  # the server refuses events more than 5 minutes ahead of its clock
    events = [
        {"id": f"e2e-{i}", "type": "sale", "occurredAt": occurred, "properties": {"amount": i}} for i in range(500)
    ]
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {secret}"
        # The key was created after the server started: it is picked up within about a second.
        deadline = time.monotonic() + 5
        while (response := session.post(f"{url}/v1/events", json={"events": events[:10]})).status_code == 401:
            assert time.monotonic() < deadline, response.text
            time.sleep(0.2)
        assert response.status_code == 202, response.text

        gzipped = session.post(
            f"{url}/v1/events",
            data=gzip.compress(json.dumps({"events": events}).encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert gzipped.status_code == 202, gzipped.text
        assert gzipped.json()["accepted"] == 490 and gzipped.json()["duplicates"] == 10

        invalid = session.post(f"{url}/v1/events", json={"events": [{"type": "Bad"}]})
        assert invalid.status_code == 422
        assert {e["field"] for e in invalid.json()["errors"]} == {"type", "occurredAt"}

    assert requests.post(f"{url}/v1/events", json={"events": events[:1]}, timeout=5).status_code == 401

    health = requests.get(f"{url}/v1/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["store"] == "sqlite"
    assert requests.get(f"{url}/openapi.json", timeout=5).json()["openapi"].startswith("3.1")
