"""Dashboards: `dashboard(slug)` latency for a 12-widget dashboard, and the push latency
of `dashboardUpdated` to many viewers.

Builds a SQLite store in a temp folder with the demo's metrics and gauge and some hours of
the demo's business (workers/demo.py), projects it, and publishes a PUBLIC dashboard of 12
widgets (3 KPIs with the previous period, 3 line charts with the previous period, 2
breakdowns, a stock table, a gauge, the latest sales, a text). Then:

1. in-process: `DashboardsService.resolve` and the whole GraphQL query through the Flask
   app's test client (no network), p50/p99 over --queries runs;
2. over HTTP: the same query posted to `pulse serve` (1 gunicorn worker), p50/p99;
3. push: --viewers anonymous SSE streams of `dashboardUpdated` (raw sockets, one selectors
   loop); posts one sale at a time and times, for each viewer, the first push whose
   "orders today" KPI includes it.

Targets (the issue's): dashboard(slug) p99 <= 50 ms on the embedded default; push p99 <=
500 ms at 200 viewers. The client runs on the same machine and takes CPU from the server.

    .venv/bin/python bench/dashboards.py            # 12 hours of history, 200 viewers, ~1 minute
    .venv/bin/python bench/dashboards.py --quick    # a small run to check the bench works (~15 s)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import PULSE, free_port, machine_busy_seconds, pulse_env, stop_server  # noqa: E402
from subscriptions import StreamReaders  # noqa: E402

from bootstrap import bootstrap  # noqa: E402
from domain import metrics as defs  # noqa: E402
from domain.access import Principal  # noqa: E402
from domain.events import Event  # noqa: E402
from domain.keys import create_key  # noqa: E402
from domain.settings import Settings  # noqa: E402
from services.dashboards import ANONYMOUS  # noqa: E402
from workers.demo import GAUGES, METRICS, DemoStream  # noqa: E402
from workers.demo_dashboard import WIDGETS  # noqa: E402

SLUG = "bench"
EDITOR = Principal(key_id=None, name="bench", scopes=frozenset({"admin"}))
TARGET_QUERY_P99_MS = 50.0
TARGET_PUSH_P99_MS = 500.0
EXTRA_WIDGETS = [
    {
        "id": "orders-by-hour",
        "kind": "CHART",
        "title": "Orders by hour",
        "chart": "COLUMN",
        "source": {
            "kind": "SERIES",
            "metric": "orders",
            "resolution": "HOUR",
            "last": 24,
            "compareTo": "PREVIOUS_PERIOD",
        },
    },
    {
        "id": "basket-by-minute",
        "kind": "CHART",
        "title": "Basket by minute",
        "source": {"kind": "SERIES", "metric": "basket", "resolution": "MINUTE", "last": 60},
    },
    {
        "id": "revenue-by-store",
        "kind": "TABLE",
        "title": "Revenue by store",
        "source": {"kind": "BREAKDOWN", "metric": "revenue", "dimension": "store"},
    },
    {"id": "beans", "kind": "GAUGE", "title": "Beans", "source": {"kind": "GAUGE", "gauge": "stock", "keys": ["mug"]}},
    {"id": "about", "kind": "TEXT", "title": "About", "markdown": "Three shops, live."},
]
FIELDS = (
    "slug version watermark widgets { id data { kpi { value previous changePercent }"
    " series { points { bucket value count partial } previous { value } } breakdown { key value count }"
    " gauges { key value } events { id occurredAt properties } error { code } } }"
)
QUERY = f'{{ dashboard(slug: "{SLUG}") {{ {FIELDS} }} }}'
SUBSCRIPTION = f'subscription {{ dashboardUpdated(slug: "{SLUG}") {{ {FIELDS} }} }}'


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def seed(db: Path, hours: float) -> int:
    """The demo's business for ``hours`` up to now, projected, and the dashboard published."""
    pulse = bootstrap(Settings(store="sqlite", db=str(db)))
    for spec in METRICS:
        defs.define_metric(
            pulse.store,
            defs.validate_metric(
                spec["name"],
                spec["eventType"],
                spec["aggregation"].lower(),
                spec.get("valueProperty"),
                spec["dimensions"],
                [],
            ),
        )
    for spec in GAUGES:
        defs.define_gauge(
            pulse.store,
            defs.validate_gauge(spec["name"], spec["eventType"], spec["valueProperty"], spec["keyProperty"]),
        )
    wire = DemoStream(random.Random(11)).history(hours, datetime.now(UTC), per_hour=600)
    events = [
        Event(
            id=e["id"],
            type=e["type"],
            occurred_at=datetime.fromisoformat(e["occurredAt"].replace("Z", "+00:00")),
            properties=e["properties"],
            source=e["source"],
        )
        for e in wire
    ]
    for start in range(0, len(events), 1000):
        pulse.store.ingest(events[start : start + 1000])
    pulse.worker().catch_up()
    # The demo's widgets (its ALERTS list included) and more, 12 in all: the dashboard.
    widgets = [*WIDGETS, *EXTRA_WIDGETS][:12]
    pulse.dashboards.create(EDITOR, SLUG, {"name": "Bench", "visibility": "PUBLIC"}, widgets)
    pulse.dashboards.publish(EDITOR, SLUG)
    pulse.close()
    return len(events)


#: CPU milliseconds per run of the last ``timed`` call (this process's: in-process measures only).
CPU_MS: list[float] = []


def timed(run, n: int) -> list[float]:
    """Wall milliseconds per run; ``CPU_MS`` gets the CPU milliseconds (less sensitive to a busy machine)."""
    run()  # warm caches once
    found = []
    CPU_MS.clear()
    for _ in range(n):
        started, cpu = time.perf_counter(), time.process_time()
        run()
        found.append((time.perf_counter() - started) * 1000)
        CPU_MS.append((time.process_time() - cpu) * 1000)
    return found


def in_process(db: Path, n: int) -> tuple[list[float], list[float], list[float], list[float]]:
    from api.app import create_app

    pulse = bootstrap(Settings(store="sqlite", db=str(db)))
    service = [*timed(lambda: pulse.dashboards.resolve(ANONYMOUS, SLUG), n)]
    service_cpu = list(CPU_MS)
    client = create_app(pulse.settings, pulse).test_client()

    def query() -> None:
        body = client.post("/graphql", json={"query": QUERY}).json
        assert "errors" not in body, body

    graphql = timed(query, n)
    pulse.close()
    return service, service_cpu, graphql, list(CPU_MS)


class Serve:
    def __init__(self, db: Path, streams: int) -> None:
        self.port = free_port()
        self.log = db.parent / "serve.log"
        env = {**pulse_env(), "PULSE_HEARTBEAT_SECONDS": "5", "PULSE_LIVE_INTERVAL_SECONDS": "0.1"}
        command = [*PULSE, "serve", "--port", str(self.port), "--db", str(db), "--workers", "1"]
        command += ["--max-streams", str(streams + 10)]
        import subprocess

        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, cwd=db.parent, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        pulse = bootstrap(Settings(store="sqlite", db=str(db)))
        self.key = create_key(pulse.store, "bench-ingest", ["ingest"])[1]
        pulse.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.request("GET", "/v1/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                stop_server(self.process)
                raise SystemExit(f"pulse serve did not start; see {self.log}")
            time.sleep(0.1)

    def request(self, method: str, path: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, json.loads(data) if data else {}


def orders_today(dashboard: dict) -> float:
    return next(w["data"]["kpi"]["value"] for w in dashboard["widgets"] if w["id"] == "orders-today") or 0.0


class Viewers(StreamReaders):
    """N anonymous SSE streams read by one selectors loop; when each one's orders KPI grows."""

    read_size = 1 << 20

    def __init__(self, port: int, count: int) -> None:
        self.values = [-1.0] * count
        self.arrivals: list[list[tuple[float, float]]] = [[] for _ in range(count)]
        self.buffers = [b""] * count
        super().__init__(port, SUBSCRIPTION, count)

    def received(self, index: int, data: bytes, at: float) -> None:
        *events, self.buffers[index] = (self.buffers[index] + data).split(b"\r\n\r\n")
        for event in events:
            if event.startswith(b"event: next"):
                payload = json.loads(event.split(b"data: ", 1)[1])
                value = orders_today(payload["data"]["dashboardUpdated"])
                if value != self.values[index]:
                    self.values[index] = value
                    self.arrivals[index].append((at, value))

    def wait_all(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if min(self.values) >= 0:
                return True
            time.sleep(0.05)
        return False

    def latencies(self, posts: list[tuple[float, float]]) -> tuple[list[float], int]:
        found, missing = [], 0
        for sent, expected in posts:
            for arrivals in self.arrivals:
                when = next((at for at, value in arrivals if value >= expected and at >= sent), None)
                if when is None:
                    missing += 1
                else:
                    found.append((when - sent) * 1000)
        return found, missing


def push_latency(server: Serve, viewers: int, posts: int, spacing: float) -> tuple[list[float], int]:
    streams = Viewers(server.port, viewers)
    try:
        if not streams.wait_all(60):
            raise SystemExit(f"not every viewer got a first value; see {server.log}")
        current = max(streams.values)
        sent_at = []
        for number in range(posts):
            event = {"id": f"bench-sale-{number}", "type": "sale", "occurredAt": datetime.now(UTC).isoformat()}
            event["properties"] = {"amount": 3.0, "category": "coffee", "store": "downtown", "product": "latte"}
            started = time.perf_counter()
            status, body = server.request("POST", "/v1/events", {"events": [event]}, server.key)
            assert status == 202, body
            current += 1
            sent_at.append((started, current))
            time.sleep(spacing)
        time.sleep(2)
        return streams.latencies(sent_at)
    finally:
        streams.close()


def line(label: str, values: list[float], target: float | None = None) -> str:
    p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
    verdict = "" if target is None else f"  (target p99 <= {target:.0f} ms: {'met' if p99 <= target else 'MISSED'})"
    return f"{label:<38} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  max {max(values):7.1f} ms  n={len(values)}{verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=12.0, help="Hours of demo history (600 events/hour).")
    parser.add_argument("--queries", type=int, default=300, help="dashboard(slug) runs per measure.")
    parser.add_argument("--viewers", type=int, default=200, help="dashboardUpdated streams.")
    parser.add_argument("--posts", type=int, default=20, help="Sales posted one at a time.")
    parser.add_argument("--spacing", type=float, default=0.5, help="Seconds between posts.")
    parser.add_argument("--quick", action="store_true", help="Small sizes: check that the bench works.")
    args = parser.parse_args()
    if args.quick:
        args.hours, args.queries, args.viewers, args.posts, args.spacing = 1.0, 30, 20, 4, 0.3

    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load average {load:.1f}")
    busy0, wall0 = machine_busy_seconds(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pulse-dash-") as tmp:
        db = Path(tmp) / "pulse.db"
        facts = seed(db, args.hours)
        print(f"store: {facts} facts over {args.hours:g} h; dashboard: 12 widgets, public")
        service, service_cpu, graphql, graphql_cpu = in_process(db, args.queries)
        print(line("in-process DashboardsService.resolve", service))
        print(line("  the same, CPU time", service_cpu))
        print(line("in-process GraphQL dashboard(slug)", graphql, TARGET_QUERY_P99_MS))
        print(line("  the same, CPU time", graphql_cpu))
        server = Serve(db, args.viewers)
        try:

            def over_http() -> None:
                status, body = server.request("POST", "/graphql", {"query": QUERY})
                assert status == 200 and "errors" not in body, body

            print(line("HTTP dashboard(slug), pulse serve", timed(over_http, args.queries), TARGET_QUERY_P99_MS))
            latencies, missing = push_latency(server, args.viewers, args.posts, args.spacing)
            label = f"push to {args.viewers} viewers ({missing} missed)"
            print(line(label, latencies, TARGET_PUSH_P99_MS if args.viewers >= 200 else None))
        finally:
            stop_server(server.process)
    busy = (machine_busy_seconds() - busy0) / (time.monotonic() - wall0)
    print(f"machine busy {busy:.2f} cores on average during the run (this bench included)")


if __name__ == "__main__":
    main()
