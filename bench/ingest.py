"""Sustained ingest throughput of POST /v1/events on the embedded default (SQLite).

Starts `pulse serve` on a fresh SQLite file (or targets --url), creates an ingest key with
the real CLI, runs several client processes that each post batches of --batch events over
one keep-alive HTTP connection for --duration seconds after a warm-up, and prints the
accepted events per second against the target. Accepted means durably appended: the
server answers 202 only after SQLite (synchronous=FULL) committed the batch.

Then the same load runs against the thin baseline (bench/thin_ingest_app.py: a bare Flask
app doing json.loads, a presence check and one INSERT OR IGNORE executemany into SQLite,
WAL, synchronous=FULL, under the same gunicorn workers and threads), and the run prints
both figures and their ratio: what Pulse's auth, validation, idempotency reporting and
projection worker cost beyond the least this stack can do.

The clients run on the same machine and share its cores with the server: the figure is
what the server sustains while the load is generated next to it.

    .venv/bin/python bench/ingest.py                      # defaults: 4 clients, 500/batch, 20 s
    .venv/bin/python bench/ingest.py --profile            # + py-spy profile of the server's workers
    .venv/bin/python bench/ingest.py --url http://127.0.0.1:8000 --key pulse_...
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import platform
import resource
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workers.processes import stop  # noqa: E402

TARGET_EVENTS_PER_SECOND = 50_000
PULSE = [sys.executable, "-m", "cli"]
SPY_OPTIONS = ["--format", "raw", "--rate", "200", "--nonblocking", "--idle", "--output"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pulse_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def start_server(db: Path, port: int, workers: int, threads: int, log: Path, *options: str) -> subprocess.Popen:
    """`pulse serve` on ``db`` with extra ``options``; returns once /v1/health answers 200."""
    command = [*PULSE, "serve", "--port", str(port), "--db", str(db), "--workers", str(workers)]
    command += ["--threads", str(threads), *options]
    process = subprocess.Popen(
        command,
        cwd=db.parent,
        env=pulse_env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # gunicorn's workers and the projection worker in one group
    )
    wait_for_health(process, port, log)
    return process


def wait_for_health(process: subprocess.Popen, port: int, log: Path) -> None:
    """Returns once GET /v1/health answers 200; stops the server and exits if it never does."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/v1/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.1)
    stop_server(process)
    raise SystemExit(f"the server did not start; see {log}")


def stop_server(process: subprocess.Popen) -> None:
    stop(process, timeout=20, group=True)


def create_key(db: Path) -> str:
    result = subprocess.run(
        [*PULSE, "keys", "create", "--name", f"bench-{os.getpid()}", "--scope", "ingest", "--db", str(db)],
        env=pulse_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def batch_body(client: int, number: int, size: int) -> bytes:
    # Distinct ids so every event is accepted, not a duplicate; realistic small properties.
    prefix = f'{{"id":"c{client}-b{number}-'
    rest = (
        '","type":"sale","occurredAt":"2026-11-23T12:00:00.123Z","source":"pos-store-12",'
        '"properties":{"amount":19.99,"product":"sku-1234","store":"store-12","quantity":2,"gift":false}}'
    )
    return ('{"events":[' + ",".join(f"{prefix}{i}{rest}" for i in range(size)) + "]}").encode()


def client_loop(client: int, url: str, key: str | None, size: int, stop_at: float, results) -> None:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=60)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    import json

    records = []  # (finished at, accepted, seconds taken)
    number = 0
    while time.time() < stop_at:
        body = batch_body(client, number, size)
        number += 1
        started = time.time()
        conn.request("POST", "/v1/events", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        finished = time.time()
        if response.status != 202:
            results.put(("error", client, response.status, payload[:300].decode(errors="replace")))
            return
        records.append((finished, json.loads(payload)["accepted"], finished - started))
    conn.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put(("ok", client, records, usage.ru_utime + usage.ru_stime))


def process_tree(root: int) -> dict[int, str]:
    """pid -> role, for the server's processes: gunicorn master, its workers, the projection
    worker and its children (the archive's process, multiprocessing's resource tracker)."""
    roles = {root: "gunicorn master"}
    for pid in _children(root):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"--parent-pid" in cmdline:
            roles[pid] = "projection worker"
            for child in _children(pid):
                spawned = b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
                roles[child] = "archive process" if spawned else "resource tracker"
        else:
            roles[pid] = "gunicorn worker"
    return roles


def _children(pid: int) -> list[int]:
    return [int(c) for c in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def stored_facts(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM events WHERE stream_id = '$facts'").fetchone()[0]


def profile_workers(server: subprocess.Popen, seconds: float, out_dir: Path) -> list[Path]:
    """py-spy on every gunicorn worker and the projection worker, for `seconds`."""
    py_spy = Path(sys.executable).parent / "py-spy"
    outputs, spies = [], []
    for pid, role in process_tree(server.pid).items():
        if role == "gunicorn master":
            continue
        name = f"{role.replace(' ', '-')}-{pid}"
        out = out_dir / f"{name}.txt"
        outputs.append(out)
        spies.append(
            subprocess.Popen(
                [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), *SPY_OPTIONS, str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    for spy in spies:
        spy.wait()
    return outputs


def _sqlite_lines() -> tuple[str, str]:
    """Frames py-spy shows for BEGIN IMMEDIATE and COMMIT in storage/sqlite.py."""
    source = (ROOT / "storage" / "sqlite.py").read_text().splitlines()
    begin = next(n for n, line in enumerate(source, 1) if '"BEGIN IMMEDIATE"' in line)
    commit = next(n for n, line in enumerate(source, 1) if '"COMMIT"' in line)
    return f"write_transaction (storage/sqlite.py:{begin})", f"write_transaction (storage/sqlite.py:{commit})"


def _step(frames: list[str], begin: str, commit: str) -> str:
    """Which step of handling a request a sampled stack is in (first rule that matches)."""
    leaf, stack = frames[-1], ";".join(frames)
    if leaf == begin:
        return "SQLite: waiting for the write lock (BEGIN IMMEDIATE)"
    if leaf == commit:
        return "SQLite: COMMIT (WAL fsync, synchronous=FULL)"
    if "SqliteEventStore._rows" in stack:
        return "store: rows for the batch (properties to JSON text)"
    if "SqliteEventStore.ingest" in stack:
        return "store: INSERT (executemany) and duplicate check"
    if "Event.__post_init__" in stack or ("__create_fn__" in stack and "api/validation.py" in stack):
        return "domain: building Event values"
    if "(api/validation.py" in stack:
        return "validation (api/validation.py)"
    if "_json_document" in stack or "_ndjson_events" in stack:
        return "JSON parsing of the body"
    if "_read_body" in stack or "_utf8" in stack:
        return "reading the body"
    if "(api/auth.py" in stack:
        return "auth (key lookup)"
    if "jsonify" in stack:
        return "response JSON"
    if "thread.py" in leaf or "selectors.py" in leaf or "Condition.wait" in leaf or "sleep" in leaf:
        return "idle: waiting for a request"
    return "HTTP and WSGI (gunicorn, werkzeug, flask)"


def summarize_profile(raws: list[Path]) -> str:
    """Share of sampled time per step, over all sampled processes of one role (py-spy raw stacks)."""
    begin, commit = _sqlite_lines()
    steps: dict[str, int] = {}
    for raw in raws:
        if not raw.exists():
            return f"{raw.name}: no profile (py-spy needs ptrace permission)"
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack:
                step = _step(stack.split(";"), begin, commit)
                steps[step] = steps.get(step, 0) + int(count)
    idle = steps.pop("idle: waiting for a request", 0)
    busy = sum(steps.values())
    if not busy:
        return "no samples"
    lines = [f"  {busy + idle} thread samples, {100 * idle / (busy + idle):.0f}% idle; of the rest:"]
    for step, count in sorted(steps.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {100 * count / busy:5.1f}%  {step}")
    return "\n".join(lines)


def summarize_self_time(raw: Path, top: int = 12) -> str:
    """The functions a process spent its samples in (self time), for the projection worker."""
    own: dict[str, int] = {}
    for line in raw.read_text().splitlines() if raw.exists() else []:
        stack, _, count = line.rpartition(" ")
        if stack:
            leaf = stack.split(";")[-1].rsplit(":", 1)[0] + ")"
            own[leaf] = own.get(leaf, 0) + int(count)
    total = sum(own.values()) or 1
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return "\n".join(f"  {100 * n / total:5.1f}%  {frame}" for frame, n in ranked)


@dataclass
class Measured:
    """What one load run against one server gave."""

    rate: float
    latencies: list[float]
    accepted_total: int
    accepted_in_window: int
    client_cpu: float
    server_cpu: dict[str, float] = field(default_factory=dict)
    worker_cpu: list[float] = field(default_factory=list)
    machine_cpu: float = 0.0
    profiles: list[Path] = field(default_factory=list)


def run_load(
    url: str,
    key: str | None,
    args: argparse.Namespace,
    server: subprocess.Popen | None,
    workdir: Path,
    profile: bool = False,
) -> Measured:
    """``args.clients`` client processes posting to ``url`` for warm-up + duration; the
    server's CPU per role is measured when ``server`` is ours."""
    results: multiprocessing.Queue = multiprocessing.Queue()
    begin = time.time()
    measure_from = begin + args.warmup
    stop_at = measure_from + args.duration
    clients = [
        multiprocessing.Process(target=client_loop, args=(n, url, key, args.batch, stop_at, results))
        for n in range(args.clients)
    ]
    for process in clients:
        process.start()
    measured = Measured(0.0, [], 0, 0, 0.0)
    if server is not None:
        time.sleep(max(0.0, measure_from - time.time()))
        roles = process_tree(server.pid)
        cpu_before = {pid: cpu_seconds(pid) for pid in roles}
        machine_before = machine_busy_seconds()
        if profile:
            measured.profiles = profile_workers(server, args.duration * 0.8, workdir)
        time.sleep(max(0.0, stop_at - time.time()))
        for pid, role in roles.items():
            used = cpu_seconds(pid) - cpu_before[pid]
            measured.server_cpu[role] = measured.server_cpu.get(role, 0.0) + used
            if role == "gunicorn worker":
                measured.worker_cpu.append(used)
        measured.machine_cpu = machine_busy_seconds() - machine_before
    outcomes = [results.get(timeout=args.warmup + args.duration + 120) for _ in clients]
    for process in clients:
        process.join()
    errors = [o for o in outcomes if o[0] == "error"]
    if errors:
        raise SystemExit(f"a client got an error answer from {url}: {errors[0]}")
    records = [record for outcome in outcomes for record in outcome[2]]
    window = [r for r in records if measure_from <= r[0] <= stop_at]
    measured.accepted_in_window = sum(r[1] for r in window)
    measured.accepted_total = sum(r[1] for r in records)
    measured.rate = measured.accepted_in_window / args.duration
    measured.latencies = sorted(r[2] for r in window)
    measured.client_cpu = sum(o[3] for o in outcomes)
    return measured


def start_thin_baseline(db: Path, port: int, workers: int, threads: int, log: Path) -> subprocess.Popen:
    """The bare Flask app of bench/thin_ingest_app.py under the same gunicorn settings."""
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    command += ["--threads", str(threads), "--worker-class", "gthread", "-c", "python:bench.thin_gunicorn_conf"]
    command += ["bench.thin_ingest_app:app"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**pulse_env(), "THIN_DB": str(db)},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_health(process, port, log)
    return process


def stored_rows(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchone()[0]


def latency_line(latencies: list[float]) -> str:
    return (
        f"latency p50 {1000 * statistics.median(latencies):.0f} ms,"
        f" p99 {1000 * latencies[int(0.99 * (len(latencies) - 1))]:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="target a running server instead of starting one (needs --key)")
    parser.add_argument("--key", help="API key with the ingest scope, for --url")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client processes [4]")
    parser.add_argument("--batch", type=int, default=500, help="events per request [500]")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds [20]")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring [3]")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of the server started [2]")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker [8]")
    parser.add_argument("--profile", action="store_true", help="py-spy the server's workers while measuring")
    parser.add_argument("--no-baseline", action="store_true", help="skip the thin Flask + SQLite baseline")
    args = parser.parse_args()

    before = machine_busy_seconds()
    time.sleep(1.0)
    busy_before_start = machine_busy_seconds() - before
    workdir = Path(tempfile.mkdtemp(prefix="pulse-bench-"))
    server = None
    db: Path | None = None
    if args.url:
        if not args.key:
            parser.error("--url needs --key")
        url, key = args.url, args.key
    else:
        db = workdir / "pulse.db"
        port = free_port()
        subprocess.run([*PULSE, "tables", "create", "--db", str(db)], env=pulse_env(), check=True, capture_output=True)
        key = create_key(db)
        server = start_server(db, port, args.workers, args.threads, workdir / "serve.log")
        url = f"http://127.0.0.1:{port}"

    try:
        pulse = run_load(url, key, args, server, workdir, profile=args.profile)
    finally:
        if server is not None:
            stop_server(server)

    baseline = None
    thin_db = workdir / "thin.db"
    if not (args.url or args.no_baseline):
        thin_port = free_port()
        thin = start_thin_baseline(thin_db, thin_port, args.workers, args.threads, workdir / "thin.log")
        try:
            baseline = run_load(f"http://127.0.0.1:{thin_port}", None, args, thin, workdir)
        finally:
            stop_server(thin)

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.processor())
    print(f"machine: {os.cpu_count()} cores, {cpu}; Python {platform.python_version()}; {platform.system()}")
    where = url if server is None else f"pulse serve --workers {args.workers} --threads {args.threads} (SQLite, {db})"
    print(f"server:  {where}")
    print(
        f"load:    {args.clients} client processes on the same machine, {args.batch} events per POST,"
        f" keep-alive, {args.warmup:g} s warm-up + {args.duration:g} s measured"
    )
    if busy_before_start > 0.2:
        print(
            f"WARNING: {busy_before_start:.2f} cores were already busy before the run started: other work on"
            " this machine takes CPU from the server, so this figure understates it"
        )
    print(f"batches: {len(pulse.latencies)} in the window; {latency_line(pulse.latencies)}")
    verdict = "meets" if pulse.rate >= TARGET_EVENTS_PER_SECOND else "BELOW"
    print(
        f"result:  {pulse.rate:,.0f} accepted events/s sustained ({verdict} the {TARGET_EVENTS_PER_SECOND:,}/s target)"
    )
    if db is not None:
        stored = stored_facts(db)
        check = "ok" if stored == pulse.accepted_total else "MISMATCH"
        print(f"stored:  {stored:,} facts in the store; clients were told {pulse.accepted_total:,} accepted: {check}")
        for path in workdir.glob("pulse*.db*"):  # hundreds of MB per run; the profiles and log stay
            path.unlink()
    if pulse.server_cpu:
        window = args.duration
        busy = ", ".join(
            f"{role} {seconds / window:.2f}" for role, seconds in sorted(pulse.server_cpu.items()) if seconds
        )
        clients_busy = pulse.client_cpu / (args.warmup + args.duration)
        others = pulse.machine_cpu / window - sum(pulse.server_cpu.values()) / window - clients_busy
        print(
            f"cpu:     cores busy on average (of {os.cpu_count()}): {busy}; clients {clients_busy:.2f};"
            f" not attributed to these (other processes, kernel) {max(0.0, others):.2f}"
        )
        print(
            "         each gunicorn worker: "
            + " + ".join(f"{used / window:.2f}" for used in pulse.worker_cpu)
            + " cores"
        )
        per_event = {
            role: 1e6 * seconds / max(1, pulse.accepted_in_window) for role, seconds in pulse.server_cpu.items()
        }
        print(
            "cost:    CPU per accepted event: "
            + ", ".join(f"{role} {micros:.1f} µs" for role, micros in sorted(per_event.items()) if micros)
        )
    if baseline is not None:
        stored = stored_rows(thin_db, "SELECT COUNT(*) FROM events")
        gunicorn_cpu = baseline.server_cpu.get("gunicorn worker", 0.0)
        print(
            f"thin baseline (bench/thin_ingest_app.py, same gunicorn, same load): {baseline.rate:,.0f} events/s,"
            f" {latency_line(baseline.latencies)}, gunicorn workers"
            f" {1e6 * gunicorn_cpu / max(1, baseline.accepted_in_window):.1f} µs CPU per event;"
            f" stored {stored:,} of {baseline.accepted_total:,} acknowledged"
        )
        print(
            "         its gunicorn workers: "
            + " + ".join(f"{used / args.duration:.2f}" for used in baseline.worker_cpu)
        )
        print(f"ratio:   Pulse / thin baseline = {pulse.rate / max(baseline.rate, 1):.2f}")
        for path in workdir.glob("thin.db*"):
            path.unlink()
    if pulse.profiles:
        print()
        print("profile (py-spy, every thread, idle included) of the gunicorn workers, by step:")
        print(summarize_profile([p for p in pulse.profiles if p.name.startswith("gunicorn")]))
        for profile in pulse.profiles:
            if profile.name.startswith("projection"):
                print("profile of the projection worker (pulse serve runs one beside gunicorn), self time:")
                print(summarize_self_time(profile))


if __name__ == "__main__":
    main()
