"""Live subscriptions: ingest-to-push latency and server CPU per subscriber.

Starts `pulse serve` on a fresh SQLite file (2 gunicorn workers, sized so each can hold
every stream), creates an admin key with the real CLI, then for 1, 50 and 200 concurrent
SSE subscribers to the same chart (seriesUpdated, MINUTE, last 60: 60 points):

- opens the streams (raw sockets, HTTP/1.0 so the body is plain SSE, all read by one
  selectors loop in a thread) and waits for every first value;
- idle window: measures the server's CPU (/proc/<pid>/stat utime+stime of the gunicorn
  master and workers) while nothing happens: heartbeats and marker reads only;
- active window: posts one `sale` at a time (--posts, --spacing apart) and, for each
  subscriber, timestamps the first push whose total count includes it; latency = push
  received - POST sent. CPU is measured over the same window.

Prints p50/p99 latency and CPU per subscriber next to the target (p99 <= 500 ms at 200)
in the same run. The client runs on the same machine and takes CPU from the server.

    .venv/bin/python bench/subscriptions.py                  # 1, 50, 200 subscribers, ~2 minutes
    .venv/bin/python bench/subscriptions.py --counts 1,50,200,400 --posts 30
    .venv/bin/python bench/subscriptions.py --counts 1000 --posts 10      # issue 13's crowd, ~1 minute
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # a bench importing this one set it already
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import PULSE, cpu_seconds, free_port, machine_busy_seconds, process_tree, pulse_env, stop_server

TARGET_P99_MS = 500.0
TARGET_AT = 200
# Issue 13: 1,000 subscribers with p99 <= 1 s and at most 0.3 ms of server CPU per subscriber per push.
CROWD = 1000
CROWD_P99_MS = 1000.0
CROWD_CPU_MS_PER_PUSH = 0.3
METRIC = "bench_sale"
QUERY = (
    f'subscription {{ seriesUpdated(metric: "{METRIC}", resolution: MINUTE, last: 60)'
    " { points { bucket value count partial } } }"
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Server:
    def __init__(self, directory: Path, workers: int, max_streams: int, heartbeat: float, interval: float) -> None:
        self.db = directory / "pulse.db"
        self.port = free_port()
        self.log = directory / "serve.log"
        env = {
            **pulse_env(),
            "PULSE_HEARTBEAT_SECONDS": str(heartbeat),
            "PULSE_LIVE_INTERVAL_SECONDS": str(interval),
        }
        command = [*PULSE, "serve", "--port", str(self.port), "--db", str(self.db), "--workers", str(workers)]
        command += ["--max-streams", str(max_streams)]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait(lambda: self.request("GET", "/v1/health")[0] == 200, "pulse serve to start")
        created = subprocess.run(
            [*PULSE, "keys", "create", "--name", "bench", "--scope", "admin", "--db", str(self.db)],
            env=pulse_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        self.key = created.stdout.strip().splitlines()[-1]
        self._wait(lambda: self.request("GET", "/v1/live")[0] == 200, "the key to work")

    def _wait(self, condition, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        stop_server(self.process)
        raise SystemExit(f"timed out waiting for {what}; see {self.log}")

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        # A new connection each time, so requests spread over the gunicorn workers.
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Bearer {getattr(self, 'key', '')}", "Content-Type": "application/json"}
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, json.loads(data) if data else {}

    def post_sale(self, number: int) -> None:
        event = {"id": f"bench-{number}", "type": "sale", "occurredAt": datetime.now(UTC).isoformat()}
        event["type"] = METRIC
        status, body = self.request("POST", "/v1/events", {"events": [event]})
        assert status == 202, body

    def gunicorn_cpu(self) -> float:
        roles = process_tree(self.process.pid)
        return sum(cpu_seconds(pid) for pid, role in roles.items() if role.startswith("gunicorn"))

    def worker_cpu(self) -> float:
        roles = process_tree(self.process.pid)
        return sum(cpu_seconds(pid) for pid, role in roles.items() if role == "projection worker")

    def live_by_pid(self, samples: int = 12) -> dict[int, dict]:
        """GET /v1/live until each gunicorn worker answered (each reports its own process)."""
        found: dict[int, dict] = {}
        workers = sum(1 for role in process_tree(self.process.pid).values() if role == "gunicorn worker")
        for _ in range(samples * workers):
            _, body = self.request("GET", "/v1/live")
            found[body["pid"]] = body
            if len(found) == workers:
                break
        return found


def open_sse_streams(
    selector: selectors.BaseSelector, port: int, query: str, count: int, key: str | None = None
) -> list[socket.socket]:
    """``count`` SSE streams of the subscription ``query`` (GET, HTTP/1.0 so the body is plain
    SSE), registered for reading in ``selector`` with their index as data."""
    path = "/graphql?" + urllib.parse.urlencode({"query": query})
    authorization = f"Authorization: Bearer {key}\r\n" if key else ""
    request = (f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{authorization}\r\n").encode()
    sockets = []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, index)
        sockets.append(sock)
    return sockets


def readable(selector: selectors.BaseSelector, size: int) -> Iterator[tuple[int, bytes]]:
    """What arrived on the streams of ``selector`` within 0.1 s, as (index, bytes); a stream
    that ended is unregistered."""
    for key, _ in selector.select(timeout=0.1):
        try:
            data = key.fileobj.recv(size)  # type: ignore[union-attr]
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            selector.unregister(key.fileobj)
            continue
        yield key.data, data


class StreamReaders:
    """``count`` SSE streams of the subscription ``query``, read by one selectors loop on a
    thread; a subclass sets its own state, then calls this ``__init__``, and handles what
    arrives (``received``)."""

    read_size = 65536

    def __init__(self, port: int, query: str, count: int, key: str | None = None) -> None:
        self.selector = selectors.DefaultSelector()
        self.refused = 0
        self.sockets = open_sse_streams(self.selector, port, query, count, key)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for index, data in readable(self.selector, self.read_size):
                self.received(index, data, time.perf_counter())

    def received(self, index: int, data: bytes, at: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()
        self.selector.close()


class Subscribers(StreamReaders):
    """N SSE streams read by one selectors loop; records when each one's total count grows."""

    def __init__(self, port: int, key: str, count: int) -> None:
        self.totals = [-1] * count
        self.arrivals: list[list[tuple[float, int]]] = [[] for _ in range(count)]
        self.buffers = [b""] * count
        super().__init__(port, QUERY, count, key)

    def received(self, index: int, data: bytes, at: float) -> None:
        buffer = self.buffers[index] + data
        if self.totals[index] == -1 and buffer.startswith(b"HTTP/1.") and b" 200 " not in buffer[:16]:
            self.refused += 1
        *events, self.buffers[index] = buffer.split(b"\r\n\r\n")
        for event in events:
            if not event.startswith(b"event: next"):
                continue  # headers, heartbeats, complete
            payload = json.loads(event.split(b"data: ", 1)[1])
            points = payload["data"]["seriesUpdated"]["points"]
            total = sum(point["count"] for point in points)
            if total != self.totals[index]:
                self.totals[index] = total
                self.arrivals[index].append((at, total))

    def wait_all(self, at_least: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if min(self.totals) >= at_least:
                return True
            time.sleep(0.02)
        return False

    def latencies(self, posts: list[tuple[float, int]]) -> tuple[list[float], int]:
        """Seconds from each POST to each subscriber's first push that includes it; and
        how many (post, subscriber) pairs never saw it."""
        found, missing = [], 0
        for sent, expected in posts:
            for arrivals in self.arrivals:
                when = next((at for at, total in arrivals if total >= expected and at >= sent), None)
                if when is None:
                    missing += 1
                else:
                    found.append(when - sent)
        return found, missing


def run_level(server: Server, count: int, args: argparse.Namespace, base_total: int, numbering: list[int]) -> dict:
    subscribers = Subscribers(server.port, server.key, count)
    if not subscribers.wait_all(base_total, timeout=120):
        ready = sum(1 for total in subscribers.totals if total >= base_total)
        subscribers.close()
        raise SystemExit(f"only {ready} of {count} subscribers got their first value ({subscribers.refused} refused)")
    time.sleep(1.0)  # let the connection burst settle

    live0 = server.live_by_pid()
    cpu0, busy0, t0 = server.gunicorn_cpu(), machine_busy_seconds(), time.perf_counter()
    time.sleep(args.idle)
    idle_cpu = (server.gunicorn_cpu() - cpu0) / (time.perf_counter() - t0)
    idle_busy = (machine_busy_seconds() - busy0) / (time.perf_counter() - t0)

    posts: list[tuple[float, int]] = []
    cpu1, worker1, t1 = server.gunicorn_cpu(), server.worker_cpu(), time.perf_counter()
    total = base_total
    for _ in range(args.posts):
        numbering[0] += 1
        sent = time.perf_counter()
        server.post_sale(numbering[0])
        total += 1
        posts.append((sent, total))
        time.sleep(args.spacing)
    subscribers.wait_all(total, timeout=10)
    elapsed = time.perf_counter() - t1
    active_cpu = (server.gunicorn_cpu() - cpu1) / elapsed
    worker_cpu = (server.worker_cpu() - worker1) / elapsed
    live1 = server.live_by_pid()

    latencies, missing = subscribers.latencies(posts)
    subscribers.close()
    reads = sum(live1[p]["watcher"]["markerReads"] - live0[p]["watcher"]["markerReads"] for p in live1 if p in live0)
    recomputations = sum(
        live1[p]["watcher"]["recomputations"] - live0[p]["watcher"]["recomputations"] for p in live1 if p in live0
    )
    return {
        "count": count,
        "latencies": latencies,
        "missing": missing,
        "idle_cpu": idle_cpu,
        "idle_busy": idle_busy,
        "active_cpu": active_cpu,
        "active_seconds": elapsed,
        "worker_cpu": worker_cpu,
        "posts": args.posts,
        "seconds": args.idle + elapsed,
        "reads": reads,
        "recomputations": recomputations,
        "workers": len(live1),
        "total": total,
    }


def wait_released(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(body["streams"]["open"] == 0 for body in server.live_by_pid().values()):
            return
        time.sleep(0.5)
    print("warning: streams of the previous level still open", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,50,200", help="Subscriber counts to run, comma-separated.")
    parser.add_argument("--posts", type=int, default=20, help="Events posted per level, one at a time.")
    parser.add_argument("--spacing", type=float, default=0.5, help="Seconds between posts.")
    parser.add_argument("--idle", type=float, default=5.0, help="Seconds of the idle CPU window.")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers.")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="PULSE_HEARTBEAT_SECONDS.")
    parser.add_argument("--interval", type=float, default=0.1, help="PULSE_LIVE_INTERVAL_SECONDS.")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    # Each worker can hold every stream: how connections spread over workers is the kernel's call.
    max_streams = max(counts) + 10

    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load average {load:.1f}")
    if load > (os.cpu_count() or 1) * 0.5:
        print("warning: the machine is busy; latency and CPU figures will be worse than on an idle one")
    with tempfile.TemporaryDirectory(prefix="pulse-subs-") as tmp:
        server = Server(Path(tmp), args.workers, max_streams, args.heartbeat, args.interval)
        print(
            f"server: pulse serve --workers {args.workers} --max-streams {max_streams}"
            f" (threads {max_streams + 4} per worker), heartbeat {args.heartbeat} s,"
            f" marker interval {args.interval} s; chart: MINUTE, last 60 (60 points)"
        )
        try:
            numbering = [0]
            server.post_sale(0)
            body: dict = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the metric exists once the worker projected it
                _, body = server.request(
                    "POST", "/graphql", {"query": f'{{ series(metric: "{METRIC}", resolution: DAY) {{ metric }} }}'}
                )
                if "errors" not in body:
                    break
                time.sleep(0.1)
            idle0, t0 = server.gunicorn_cpu(), time.perf_counter()
            time.sleep(args.idle)
            baseline = (server.gunicorn_cpu() - idle0) / (time.perf_counter() - t0)
            print(f"baseline, no subscriber: gunicorn CPU {baseline * 1000:.1f} ms/s")

            results = []
            total = 1
            for count in counts:
                result = run_level(server, count, args, total, numbering)
                total = result["total"]
                results.append(result)
                wait_released(server, timeout=4 * args.heartbeat + 10)
        finally:
            stop_server(server.process)

    header = (
        f"{'subscribers':>11}  {'p50 ms':>7}  {'p99 ms':>7}  {'max ms':>7}  {'missed':>6}  "
        f"{'idle CPU ms/s':>13}  {'per sub':>8}  {'active CPU ms/s':>15}  {'per sub':>8}  "
        f"{'marker reads/s':>14}  {'recomputes/post':>15}"
    )
    print()
    print(header)
    for r in results:
        lat = [v * 1000 for v in r["latencies"]]
        print(
            f"{r['count']:>11}  {percentile(lat, 0.5):>7.0f}  {percentile(lat, 0.99):>7.0f}  {max(lat):>7.0f}"
            f"  {r['missing']:>6}  {r['idle_cpu'] * 1000:>13.1f}  {r['idle_cpu'] * 1000 / r['count']:>8.2f}"
            f"  {r['active_cpu'] * 1000:>15.1f}  {r['active_cpu'] * 1000 / r['count']:>8.2f}"
            f"  {r['reads'] / r['seconds']:>14.1f}  {r['recomputations'] / r['posts']:>15.1f}"
        )
    print()
    for r in results:
        if r["count"] == TARGET_AT or (TARGET_AT not in counts and r is results[-1]):
            p99 = percentile([v * 1000 for v in r["latencies"]], 0.99)
            met = p99 <= TARGET_P99_MS and r["missing"] == 0
            print(
                f"target: p99 ingest-to-push <= {TARGET_P99_MS:.0f} ms at {TARGET_AT} subscribers:"
                f" {p99:.0f} ms at {r['count']} -> {'met' if met else 'MISSED'}"
            )
    for r in results:
        if r["count"] == CROWD:
            p99 = percentile([v * 1000 for v in r["latencies"]], 0.99)
            per_push = r["active_cpu"] * r["active_seconds"] * 1000 / (r["posts"] * r["count"])
            met = p99 <= CROWD_P99_MS and r["missing"] == 0 and per_push <= CROWD_CPU_MS_PER_PUSH
            print(
                f"target: {CROWD} subscribers, p99 <= {CROWD_P99_MS:.0f} ms and server CPU per subscriber per push"
                f" <= {CROWD_CPU_MS_PER_PUSH} ms: {p99:.0f} ms, {per_push:.2f} ms -> {'met' if met else 'MISSED'}"
            )
    print(
        "CPU is the gunicorn master and workers (utime+stime from /proc), in ms of CPU per second of wall"
        " time; 'per sub' divides by the subscribers. Marker reads/s and recomputes/post are summed over"
        f" the {results[-1]['workers']} workers (each has its own watcher); the projection worker used"
        f" {results[-1]['worker_cpu'] * 1000:.0f} ms/s during the last active window."
    )


if __name__ == "__main__":
    main()
