"""Fetch and run Amazon's DynamoDB Local for tests and local runs.

DynamoDB Local ships inside the npm package ``amplify-dynamodb-simulator`` (its
``emulator/`` folder). ``python scripts/dynamodb_local.py fetch`` unpacks it once into
``.cache/dynamodb-local`` (not committed); ``start`` runs it in the foreground.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

PACKAGE = "amplify-dynamodb-simulator@2.9.30"
ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("PULSE_DYNAMODB_LOCAL_DIR", ROOT / ".cache" / "dynamodb-local"))
JAR = CACHE / "DynamoDBLocal.jar"


class DynamoDBLocalMissing(RuntimeError):
    pass


def fetch() -> Path:
    """Unpack DynamoDB Local into the cache unless it is there already."""
    if JAR.exists():
        return CACHE
    npm = shutil.which("npm")
    if npm is None:
        raise DynamoDBLocalMissing("npm is needed to fetch DynamoDB Local (install Node.js/npm)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", PACKAGE, "--silent"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        (archive,) = Path(tmp).glob("*.tgz")
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("package/emulator/")]
            tar.extractall(tmp, members=members, filter="data")
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        staging = CACHE.with_name(CACHE.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.move(str(Path(tmp) / "package" / "emulator"), staging)
        staging.rename(CACHE)
    return CACHE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(port: int) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise DynamoDBLocalMissing("Java 17 is needed to run DynamoDB Local (apt install openjdk-17-jre-headless)")
    if not JAR.exists():
        raise DynamoDBLocalMissing(f"DynamoDB Local is not in {CACHE}; run: python scripts/dynamodb_local.py fetch")
    return [
        java,
        f"-Djava.library.path={CACHE / 'DynamoDBLocal_lib'}",
        "-jar",
        str(JAR),
        "-inMemory",
        "-disableTelemetry",
        "-port",
        str(port),
    ]


def start(port: int | None = None, log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start DynamoDB Local on ``port`` (a free one by default); wait until it listens."""
    port = port or free_port()
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
    process = subprocess.Popen(command(port), stdout=out, stderr=subprocess.STDOUT, cwd=CACHE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DynamoDBLocalMissing(f"DynamoDB Local exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise DynamoDBLocalMissing("DynamoDB Local did not start listening within 60 s")


def stop(process: subprocess.Popen) -> None:
    from workers.processes import stop as stop_process  # Pulse is installed wherever this runs

    stop_process(process)


def main(argv: list[str]) -> int:
    if argv[:1] == ["fetch"]:
        print(fetch())
        return 0
    if argv[:1] == ["start"]:
        port = int(argv[1]) if len(argv) > 1 else 8000
        fetch()
        process, endpoint = start(port)
        print(f"DynamoDB Local on {endpoint} (pid {process.pid}); Ctrl-C stops it")
        try:
            process.wait()
        except KeyboardInterrupt:
            stop(process)
        return 0
    print("usage: python scripts/dynamodb_local.py fetch | start [PORT]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
