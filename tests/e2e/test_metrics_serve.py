"""GET /metrics on a real `pulse serve` (gunicorn, two workers, multi-process mode): the
ingest counts are the sum over every worker whichever answers the scrape, and the lag
figure moves when the projection worker is stopped while ingest goes on, then returns to
0 when it runs again. JSON logs carry the request id the client sent."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import PULSE, ROOT, free_port, wait_until
from tests.e2e.test_serve_live import children, command_line
from tests.support import real_now

pytestmark = pytest.mark.serves


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    answer = requests.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def lag(url: str) -> float | None:
    return scrape(url).get(("pulse_projection_lag_events", (("partition", ""), ("projection", "metrics"))))


def post(url: str, *ids: str, request_id: str | None = None) -> requests.Response:
    at = (real_now() - timedelta(minutes=1)).isoformat()
    body = {"events": [{"id": i, "type": "sale", "occurredAt": at, "properties": {"amount": 2}} for i in ids]}
    headers = {"X-Request-Id": request_id} if request_id else {}
    answer = requests.post(f"{url}/v1/events", json=body, headers=headers, timeout=10)
    assert answer.status_code == 202, answer.text
    return answer


def test_metrics_under_gunicorn_and_lag_while_the_worker_is_stopped(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PULSE_LOG_FORMAT": "json"}
    command = [*PULSE, "serve", "--port", url.rsplit(":", 1)[1], "--db", str(tmp_path / "pulse.db")]
    server = subprocess.Popen(
        [*command, "--workers", "2", "--no-auth"],
        cwd=tmp_path,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker: int | None = None
    try:

        def healthy() -> bool:
            assert server.poll() is None, log.read_text()
            with contextlib.suppress(requests.ConnectionError):
                return requests.get(f"{url}/healthz", timeout=1).status_code == 200
            return False

        wait_until(healthy, "pulse serve to start")
        found = wait_until(lambda: [p for p in children(server.pid) if " worker " in command_line(p)], "the worker")
        worker = found[0]

        answer = post(url, "a", "b", "c", request_id="trace-7")
        assert answer.headers["X-Request-Id"] == "trace-7"
        wait_until(lambda: lag(url) == 0, "the worker to catch up")
        # Whichever gunicorn worker answers, the count is every worker's.
        for _ in range(6):
            assert scrape(url)[("pulse_events_accepted_total", ())] == 3

        os.kill(worker, signal.SIGSTOP)  # the projection worker stops; ingest goes on
        post(url, "d", "e", "f", "g")
        assert wait_until(lambda: lag(url) == 4, "lag to show the 4 unprojected events")
        assert scrape(url)[("pulse_projection_lag_seconds", (("partition", ""), ("projection", "metrics")))] > 0

        os.kill(worker, signal.SIGCONT)
        wait_until(lambda: lag(url) == 0, "lag to return to 0")
    finally:
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=15)

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, log.read_text()
    assert any(line.get("request_id") == "trace-7" for line in lines), "the access line of the traced request"
