"""Soak: Pulse held at a steady ingest rate for minutes, with everything a real day has.

Starts `pulse serve` (2 gunicorn workers and its projection worker) on a fresh SQLite file,
then for --minutes runs at the same time:

- ingest at --rate events/s (default 25,000: half of bench/ingest.py's 50,000 target), from
  --clients processes (bench/paced_ingest.py) that send batches of --batch on a fixed
  schedule over a pool of keep-alive connections, bodies pre-encoded with unique ids;
- --subscribers SSE streams of `seriesUpdated` on the ingested metric, read by one selectors
  loop that counts pushes (`event: next`) without decoding them, each checked to keep
  receiving pushes;
- a query loop: `series` and `projections` over HTTP, one after the other, all the time.

Every --sample seconds it records the resident memory of the server's processes (gunicorn
master, workers, projection worker, from /proc) and the projection lag (`projections`).
At the end it prints: the rate asked and the rate acknowledged, per second too (how many
seconds fell short, by how much); the query loop's latency; the memory slope of each role
(least squares, MB per 10 minutes, after the first minute of warm-up, and in each half of
that), the lag at the start and end of the run and its slope, errors of any kind (non-2xx answers, GraphQL errors,
streams that stopped), stored facts against the events the clients were told were
accepted, and the CPU the load itself took (clients and stream readers).

    .venv/bin/python bench/soak.py                         # 10 minutes at 25,000 events/s
    .venv/bin/python bench/soak.py --minutes 2 --rate 25000 --subscribers 50
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from subprocess import DEVNULL

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import cpu_seconds, process_tree, stop_server
from paced_ingest import PacedResult, paced_ingest
from subscriptions import METRIC, QUERY, Server, StreamReaders

PAGE = os.sysconf("SC_PAGE_SIZE")
PUSH = b"event: next"


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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class StreamCounter(StreamReaders):
    """N SSE streams of the soak's chart, read by one selectors loop in a thread. It counts
    pushes (``event: next``) and the longest gap between two of a stream's pushes, without
    decoding them: whether each stream keeps receiving is what the soak checks, and JSON
    decoding 500 pushes a second would take the server's CPU."""

    read_size = 262144

    def __init__(self, port: int, key: str, count: int) -> None:
        self.pushes = [0] * count
        self.last_push = [0.0] * count
        self.longest_gap = [0.0] * count
        self.tails = [b""] * count
        super().__init__(port, QUERY, count, key)

    def received(self, index: int, data: bytes, at: float) -> None:
        if not self.pushes[index] and data.startswith(b"HTTP/1.") and b" 200 " not in data[:16]:
            self.refused += 1
        window = self.tails[index] + data
        found = window.count(PUSH)
        self.tails[index] = window[-(len(PUSH) - 1) :]  # a marker split over two reads counts once
        if found:
            if self.pushes[index]:
                self.longest_gap[index] = max(self.longest_gap[index], at - self.last_push[index])
            self.pushes[index] += found
            self.last_push[index] = at

    def wait_all(self, timeout: float) -> bool:
        """Every stream got its first push."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if min(self.pushes) >= 1:
                return True
            time.sleep(0.02)
        return False

    def reset_gaps(self) -> None:
        self.longest_gap = [0.0] * len(self.longest_gap)


class QueryLoop:
    """`series` and `projections` over HTTP, back to back, until stopped; keeps the lag and
    each query's latency."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.queries = 0
        self.errors: list[str] = []
        self.lag: list[tuple[float, float]] = []  # (seconds since start, lag in events)
        self.latencies: dict[str, list[float]] = {"series": [], "projections": []}
        self._stop = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _query(self, name: str, query: str) -> dict:
        sent = time.perf_counter()
        status, body = self.server.request("POST", "/graphql", {"query": query})
        self.latencies[name].append(time.perf_counter() - sent)
        self.queries += 1
        if status != 200 or "errors" in body:
            self.errors.append(f"{status}: {json.dumps(body)[:200]}")
        return body.get("data") or {}

    def _run(self) -> None:
        series = f'{{ series(metric: "{METRIC}", resolution: MINUTE, last: 60) {{ points {{ count }} }} }}'
        while not self._stop.is_set():
            self._query("series", series)
            data = self._query("projections", "{ projections { name lagEvents } }")
            lags = [p["lagEvents"] or 0 for p in data.get("projections", [])]
            if lags:
                self.lag.append((time.monotonic() - self.started, float(max(lags))))

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)


# py-spy's idle detection is not reliable here (threads blocked in epoll or on a queue are
# sampled too), so waiting stacks are recognised by their innermost frame and left out.
SPY_OPTIONS = ["--format", "raw", "--rate", "100", "--nonblocking", "--output"]
WAITING = ("thread.py", "selectors.py", "Condition.wait", "Event.wait", "sleep", "queue.py")


def _busy_stacks(raw: Path) -> list[tuple[str, int]]:
    """(stack, samples) of ``raw`` whose innermost frame is not a wait."""
    stacks = []
    for line in raw.read_text().splitlines() if raw.exists() else []:
        stack, _, count = line.rpartition(" ")
        if stack and not any(w in stack.rsplit(";", 1)[-1] for w in WAITING):
            stacks.append((stack, int(count)))
    return stacks


def _self_time(stacks: list[tuple[str, int]], top: int = 12) -> list[str]:
    own: dict[str, int] = {}
    for stack, count in stacks:
        leaf = stack.rsplit(";", 1)[-1].rsplit(":", 1)[0] + ")"
        own[leaf] = own.get(leaf, 0) + count
    total = sum(own.values()) or 1
    return [f"  {100 * n / total:5.1f}%  {leaf}" for leaf, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]]


def spy_on(server_pid: int, seconds: float, out_dir: Path) -> list[Path]:
    """py-spy on the gunicorn workers and the projection worker for ``seconds``."""
    py_spy = Path(sys.executable).parent / "py-spy"
    outputs, spies = [], []
    for pid, role in process_tree(server_pid).items():
        if role != "gunicorn master":
            outputs.append(out_dir / f"{role.replace(' ', '-')}-{pid}.txt")
            command = [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), *SPY_OPTIONS]
            spies.append(subprocess.Popen([*command, str(outputs[-1])], stdout=DEVNULL, stderr=DEVNULL))
    for spy in spies:
        spy.wait()
    return outputs


def _where(stack: str) -> str:
    """What a sampled gunicorn-worker stack (py-spy raw, on a CPU) was serving."""
    if "(api/live.py" in stack or "(api/stream_body.py" in stack or "(api/graphql_live.py" in stack:
        return "live subscription streams"
    if "(api/ingest.py" in stack:
        return "ingest (POST /v1/events)"
    if "(api/graphql_view.py" in stack:
        return "GraphQL queries (the query loop)"
    return "other (gunicorn's loop, accept, WSGI, logging)"


def profile_report(raws: list[Path], seconds: float) -> list[str]:
    """Where the gunicorn workers' busy samples went, by what they served; the busiest
    functions of the workers and of the projection worker (self time, waits left out)."""
    workers = [stack for raw in raws if raw.name.startswith("gunicorn") for stack in _busy_stacks(raw)]
    kinds: dict[str, int] = {}
    for stack, count in workers:
        kinds[_where(stack)] = kinds.get(_where(stack), 0) + count
    busy = sum(kinds.values()) or 1
    lines = [f"profile: gunicorn workers' busy samples (py-spy, {seconds:g} s from the middle of the run), by what:"]
    lines += [f"  {100 * n / busy:5.1f}%  {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1])]
    lines += ["         gunicorn workers, self time:", *_self_time(workers)]
    for raw in (r for r in raws if r.name.startswith("projection")):
        lines += ["         projection worker, self time:", *_self_time(_busy_stacks(raw))]
    return lines


def rate_report(rate: float, seconds: float, outcomes: list[PacedResult]) -> list[str]:
    """The rate asked against the rate acknowledged, over the run and second by second."""
    accepted = sum(o.accepted for o in outcomes)
    whole = int(seconds)
    per_second = [sum(o.acked[s] for o in outcomes) for s in range(whole)]
    short = [(s, rate - acked) for s, acked in enumerate(per_second) if acked < 0.95 * rate]
    asked = rate * seconds
    lines = [
        f"rate:    asked {rate:,.0f} events/s; acknowledged {accepted / seconds:,.0f} events/s on average"
        f" ({100 * accepted / asked:.1f} % of the {asked:,.0f} asked: {max(0.0, asked - accepted):,.0f} short)",
        f"         per second acknowledged: min {min(per_second, default=0):,}, p1 {percentile(per_second, 0.01):,.0f},"
        f" median {percentile(per_second, 0.5):,.0f}, max {max(per_second, default=0):,}",
        f"         seconds under 95 % of the rate asked: {len(short)} of {whole}"
        + (
            f"; their shortfall: mean {statistics.mean(gap for _, gap in short):,.0f},"
            f" worst {max(gap for _, gap in short):,.0f} events/s (second {max(short, key=lambda x: x[1])[0]})"
            if short
            else ""
        ),
    ]
    late = sum(o.late for o in outcomes)
    unsent = sum(o.unsent for o in outcomes)
    sent = sum(o.sent for o in outcomes)
    latencies = [x for o in outcomes for x in o.latencies]
    lines.append(
        f"         batches: {sent:,} sent, {late:,} more than one interval late, {unsent:,} of the schedule never sent;"
        f" POST latency p50 {1000 * percentile(latencies, 0.5):.0f} ms, p99 {1000 * percentile(latencies, 0.99):.0f} ms"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=25_000, help="events/s to hold [25,000]")
    parser.add_argument("--clients", type=int, default=1, help="ingest client processes [1]")
    parser.add_argument(
        "--connections",
        type=int,
        default=32,
        help="keep-alive connections per client, enough that the pool is not what limits the rate [32]",
    )
    parser.add_argument("--batch", type=int, default=200, help="events per POST [200]")
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between memory/lag samples [10]")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the server's processes for 20 s from the middle of the run"
    )
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
            subscribers = StreamCounter(server.port, server.key, args.subscribers)
            if not subscribers.wait_all(timeout=60):
                raise SystemExit(f"the subscribers did not get their first value ({subscribers.refused} refused)")
            queries = QueryLoop(server)
            results: multiprocessing.Queue = multiprocessing.Queue()
            own_cpu = resource.getrusage(resource.RUSAGE_SELF)
            start = time.time() + 0.5  # the clients' first batches are due once they have started
            stop_at = start + seconds
            clients = [
                multiprocessing.Process(
                    target=paced_ingest,
                    args=(
                        n,
                        server.port,
                        server.key,
                        METRIC,
                        args.batch,
                        args.rate / args.clients,
                        args.connections,
                        start,
                        stop_at,
                        results,
                    ),
                )
                for n in range(args.clients)
            ]
            for process in clients:
                process.start()
            time.sleep(max(0.0, start - time.time()))
            pushes_before = list(subscribers.pushes)
            subscribers.reset_gaps()
            roles = process_tree(server.process.pid)
            cpu_before = {pid: cpu_seconds(pid) for pid in roles}
            spy: list[list[Path]] = []
            spying = threading.Timer(
                max(0.0, seconds / 2 - 10),
                lambda: spy.append(spy_on(server.process.pid, min(20.0, seconds), Path(tmp))),
            )
            if args.profile:
                spying.start()
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
            server_cpu = {
                f"{role} {pid}" if role != "gunicorn master" else role: (cpu_seconds(pid) - before) / seconds
                for pid, before in cpu_before.items()
                for role in [roles[pid]]
            }
            outcomes: list[PacedResult] = [results.get(timeout=120) for _ in clients]
            if args.profile:
                spying.join(timeout=60)
            profile_lines = ["profile: py-spy gave nothing"] * args.profile
            try:
                profile_lines = profile_report(spy[0], min(20.0, seconds)) if spy else profile_lines
            except (OSError, ValueError) as error:  # the run's own figures still print
                profile_lines = [f"profile: could not be read ({error})"]
            for process in clients:
                process.join()
            gaps = list(subscribers.longest_gap)
            time.sleep(3)  # the last pushes and the worker's last batches
            silent = sum(1 for before, after in zip(pushes_before, subscribers.pushes, strict=True) if after <= before)
            pushes = sum(subscribers.pushes) - sum(pushes_before)
            used = resource.getrusage(resource.RUSAGE_SELF)
            readers_cpu = used.ru_utime + used.ru_stime - own_cpu.ru_utime - own_cpu.ru_stime
        finally:
            if queries is not None:
                queries.stop()
            if subscribers is not None:
                subscribers.close()
            stop_server(server.process)
        with sqlite3.connect(server.db) as conn:
            stored = conn.execute(f"SELECT COUNT(*) FROM events WHERE type = '{METRIC}'").fetchone()[0]

    accepted = sum(o.accepted for o in outcomes) + 1  # + the first sale
    post_errors = sum(o.errors for o in outcomes)
    print()
    print(
        f"load:    {args.minutes:g} min; {args.clients} client process(es), up to {args.connections} connections each,"
        f" {args.batch}/POST on a fixed schedule; {args.subscribers} streams; the query loop"
    )
    for line in rate_report(args.rate, seconds, outcomes):
        print(line)
    series, projections = queries.latencies["series"], queries.latencies["projections"]
    print(
        f"queries: {queries.queries:,} ({queries.queries / seconds:.1f}/s), back to back;"
        f" series p50 {1000 * percentile(series, 0.5):.0f} ms, p99 {1000 * percentile(series, 0.99):.0f} ms;"
        f" projections p50 {1000 * percentile(projections, 0.5):.0f} ms,"
        f" p99 {1000 * percentile(projections, 0.99):.0f} ms"
    )
    print(
        f"streams: {pushes:,} pushes to {args.subscribers} streams ({pushes / seconds / max(1, args.subscribers):.1f}"
        f" per stream per s); longest gap between two pushes of one stream {max(gaps, default=0):.1f} s"
    )
    print(
        "memory:  slope after the first minute, MB per 10 minutes (flat is about 0), and in each half of that"
        " (growth that is settling falls in the second half; a leak does not)"
    )
    for name, points in sorted(memory.items()):
        steady = [(x, y) for x, y in points if x >= 60] or points
        middle = (steady[0][0] + steady[-1][0]) / 2
        halves = [[(x, y) for x, y in steady if x <= middle], [(x, y) for x, y in steady if x >= middle]]
        print(
            f"  {name:28} {steady[0][1]:7.0f} -> {steady[-1][1]:7.0f} MB, slope {600 * slope(steady):+6.1f}"
            f" (halves {600 * slope(halves[0]):+6.1f}, {600 * slope(halves[1]):+6.1f})"
        )
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
    first = next((o.first_error for o in outcomes if o.first_error), "") or (queries.errors or [""])[0]
    if first:
        print(f"         first: {first}")
    check = "ok" if stored == accepted else "MISMATCH"
    print(f"stored:  {stored:,} facts; clients were told {accepted:,} accepted: {check}")
    print(
        "server CPU (cores busy on average): "
        + ", ".join(f"{name} {cores:.2f}" for name, cores in sorted(server_cpu.items()))
        + f"; all {sum(server_cpu.values()):.2f} of {os.cpu_count()}"
    )
    client_cpu = sum(o.cpu_seconds for o in outcomes)
    print(
        f"load's own CPU (cores, on the server's machine): ingest clients {client_cpu / seconds:.2f},"
        f" stream readers and query loop {readers_cpu / seconds:.2f}"
    )

    for line in profile_lines:
        print(line)


if __name__ == "__main__":
    main()
