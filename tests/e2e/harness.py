"""What the end-to-end tests share: running the real `pulse` command and waiting on it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PULSE = [sys.executable, "-m", "cli"]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_pulse(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*PULSE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30.0, poll: float = 0.02) -> Any:
    """The first truthy value of ``condition()``; fails naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


def answers_health(url: str) -> bool:
    """``GET /v1/health`` answered 200. A refused connection or a slow answer (a server still
    starting, a busy machine, DynamoDB Local slow to answer the health check's ping) is not
    yet, not a failure: the caller's ``wait_until`` gives up at its own deadline."""
    import requests

    try:
        return requests.get(f"{url}/v1/health", timeout=1).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False


@contextmanager
def pulse_serve(directory: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A real `pulse serve --port P *args` run in ``directory`` (its log in serve.log there)
    until the block ends; yields its URL once it answers /v1/health. Its own process group, so
    stopping it stops gunicorn's workers and the projection worker too."""
    port = free_port()
    log = (directory / "serve.log").open("w")
    process = subprocess.Popen(
        [*PULSE, "serve", "--port", str(port), *args],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not answers_health(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"pulse serve did not start:\n{(directory / 'serve.log').read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
