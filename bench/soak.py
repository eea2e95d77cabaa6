"""Soak: Pulse held at a steady ingest rate for minutes, with everything a real day has.

Starts `pulse serve` (2 gunicorn workers and its projection worker) on a fresh SQLite file,
then for --minutes runs at the same time:

- ingest at --rate events/s (default: half of what bench/ingest.py measured), from
  client processes posting batches of --batch on a fixed schedule;
- --subscribers SSE streams of `seriesUpdated` on the ingested metric (bench/subscriptions.py's
  reader), each checked to keep receiving pushes;
- a query loop: `series` and `projections` over HTTP, one after the other, all the time.

Every --sample seconds it records the resident memory of the server's processes (gunicorn
master, workers, projection worker, from /proc) and the projection lag (`projections`).
At the end it prints: the memory slope of each role (least squares, MB per 10 minutes,
after the first minute of warm-up), the lag at the start and end of the run and its slope,
errors of any kind (non-2xx answers, GraphQL errors, streams that stopped), and stored
facts against the events the clients were told were accepted.

    .venv/bin/python bench/soak.py                         # 10 minutes at 12,000 events/s
    .venv/bin/python bench/soak.py --minutes 2 --rate 5000 --subscribers 20
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import batch_body, process_tree, stop_server
from subscriptions import METRIC, Server, Subscribers

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 1e6
    except OSError:
        return 0.0


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; 0 for fewer than 2."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def ingest_loop(client: int, port: int, key: str, size: int, rate: float, stop_at: float, results) -> None:
    """Posts batches of ``size`` on a fixed schedule so this client adds ``rate`` events/s."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    interval = size / rate
    accepted = errors = number = late = 0
    next_at = time.time()
    # Stops at the end of the run even when behind schedule (the server slower than --rate):
    # the average acknowledged rate then shows how far short it fell.
    while next_at < stop_at and time.time() < stop_at:
        pause = next_at - time.time()
        if pause > 0:
            time.sleep(pause)
        elif pause < -interval:
            late += 1  # the server could not keep up with the schedule
        body = batch_body(client, number, size).replace(b'"type":"sale"', f'"type":"{METRIC}"'.encode())
        body = body.replace(b'"occurredAt":"2026-11-23T12:00:00.123Z"', b'"occurredAt":"%s"' % _now_iso().encode())
        number += 1
        next_at += interval
        try:
            conn.request("POST", "/v1/events", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status == 202:
                accepted += json.loads(payload)["accepted"]
            else:
                errors += 1
        except OSError:
            errors += 1
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    results.put((accepted, errors, late))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class QueryLoop:
    """`series` and `projections` over HTTP, back to back, until stopped; keeps the lag."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.queries = 0
        self.errors: list[str] = []
        self.lag: list[tuple[float, float]] = []  # (seconds since start, lag in events)
        self._stop = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _query(self, query: str) -> dict:
        status, body = self.server.request("POST", "/graphql", {"query": query})
        self.queries += 1
        if status != 200 or "errors" in body:
            self.errors.append(f"{status}: {json.dumps(body)[:200]}")
        return body.get("data") or {}

    def _run(self) -> None:
        while not self._stop.is_set():
            self._query(f'{{ series(metric: "{METRIC}", resolution: MINUTE, last: 60) {{ points {{ count }} }} }}')
            data = self._query("{ projections { name lagEvents } }")
            lags = [p["lagEvents"] or 0 for p in data.get("projections", [])]
            if lags:
                self.lag.append((time.monotonic() - self.started, float(max(lags))))

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=12_000, help="events/s to hold [12,000]")
    parser.add_argument("--clients", type=int, default=2, help="ingest client processes [2]")
    parser.add_argument("--batch", type=int, default=200, help="events per POST [200]")
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between memory/lag samples [10]")
    args = parser.parse_args()

    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load average {load:.1f}")
    if load > (os.cpu_count() or 1) * 0.5:
        print("warning: the machine is busy; this soak shares it with other work")
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="pulse-soak-") as tmp:
        server = Server(Path(tmp), workers=2, max_streams=args.subscribers + 10, heartbeat=5.0, interval=0.1)
        subscribers = queries = None
        clients: list[multiprocessing.Process] = []
        memory: dict[str, list[tuple[float, float]]] = {}
        try:
            server.post_sale(0)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the metric exists once the worker projected it
                query = f'{{ series(metric: "{METRIC}", resolution: DAY) {{ metric }} }}'
                if "errors" not in server.request("POST", "/graphql", {"query": query})[1]:
                    break
                time.sleep(0.1)
            subscribers = Subscribers(server.port, server.key, args.subscribers)
            if not subscribers.wait_all(1, timeout=60):
                raise SystemExit("the subscribers did not get their first value")
            queries = QueryLoop(server)
            results: multiprocessing.Queue = multiprocessing.Queue()
            start = time.time()
            stop_at = start + seconds
            clients = [
                multiprocessing.Process(
                    target=ingest_loop,
                    args=(n, server.port, server.key, args.batch, args.rate / args.clients, stop_at, results),
                )
                for n in range(args.clients)
            ]
            for process in clients:
                process.start()
            pushes_before = [len(a) for a in subscribers.arrivals]
            while time.time() < stop_at:
                time.sleep(min(args.sample, max(0.0, stop_at - time.time())))
                at = time.time() - start
                for pid, role in process_tree(server.process.pid).items():
                    name = f"{role} {pid}" if role != "gunicorn master" else role
                    memory.setdefault(name, []).append((at, rss_mb(pid)))
                print(
                    f"  {at / 60:5.1f} min: RSS "
                    + ", ".join(f"{name} {points[-1][1]:.0f} MB" for name, points in sorted(memory.items()))
                    + (f"; lag {queries.lag[-1][1]:.0f} events" if queries.lag else ""),
                    flush=True,
                )
            outcomes = [results.get(timeout=120) for _ in clients]
            for process in clients:
                process.join()
            time.sleep(3)  # the last pushes and the worker's last batches
            silent = sum(
                1
                for before, arrivals in zip(pushes_before, subscribers.arrivals, strict=True)
                if len(arrivals) <= before
            )
        finally:
            if queries is not None:
                queries.stop()
            if subscribers is not None:
                subscribers.close()
            stop_server(server.process)
        with sqlite3.connect(server.db) as conn:
            stored = conn.execute(f"SELECT COUNT(*) FROM events WHERE type = '{METRIC}'").fetchone()[0]

    accepted = sum(o[0] for o in outcomes) + 1  # + the first sale
    post_errors = sum(o[1] for o in outcomes)
    late = sum(o[2] for o in outcomes)
    print()
    print(
        f"held:    {args.rate:,.0f} events/s for {args.minutes:g} min ({args.clients} clients, {args.batch}/POST);"
        f" {accepted / seconds:,.0f} events/s acknowledged on average; {late} batches sent late"
    )
    print("memory:  slope after the first minute, MB per 10 minutes (flat is about 0):")
    for name, points in sorted(memory.items()):
        steady = [(x, y) for x, y in points if x >= 60] or points
        print(f"  {name:28} {steady[0][1]:7.0f} -> {steady[-1][1]:7.0f} MB, slope {600 * slope(steady):+6.1f}")
    lag = queries.lag
    steady_lag = [(x, y) for x, y in lag if x >= 60] or lag
    if lag:
        print(
            f"lag:     {lag[0][1]:.0f} events at the start, {lag[-1][1]:.0f} at the end,"
            f" max {max(y for _, y in lag):.0f};"
            f" slope {60 * slope(steady_lag):+.1f} events/min after the first minute (not growing: about 0)"
        )
    print(
        f"errors:  {post_errors} failed POSTs, {len(queries.errors)} failed queries of {queries.queries},"
        f" {silent} of {args.subscribers} streams silent"
    )
    if queries.errors:
        print(f"         first: {queries.errors[0]}")
    check = "ok" if stored == accepted else "MISMATCH"
    print(f"stored:  {stored:,} facts; clients were told {accepted:,} accepted: {check}")


if __name__ == "__main__":
    main()
