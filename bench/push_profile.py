"""The Python cost of one live push per subscriber, in-process, without threads or sockets.

Opens N SSE subscriptions to one chart (`seriesUpdated`, MINUTE, last 60: 60 points) through
the Flask app on a fresh SQLite store, then P times: ingests a sale, projects it, has the
change watcher read the markers once, and pulls the next chunk from every stream on this one
thread. Prints the process CPU per push per subscriber over the pulls only, and with
--profile the cProfile of those pulls (it roughly doubles the figure).

What it leaves out is what `bench/subscriptions.py` adds: a thread per stream woken from the
watcher's thread, the GIL hand-offs between them, and the socket writes.

    .venv/bin/python bench/push_profile.py                      # 200 streams x 10 pushes, ~10 s
    .venv/bin/python bench/push_profile.py --streams 50 --pushes 5 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.app import create_app
from api.graphql_live import live_watcher
from bootstrap import bootstrap
from domain.events import Event
from domain.settings import Settings

QUERY = (
    'subscription { seriesUpdated(metric: "sale", resolution: MINUTE, last: 60)'
    " { points { bucket value count partial } } }"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--pushes", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="Print cProfile's top functions too.")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the auth-off banner

    with tempfile.TemporaryDirectory(prefix="pulse-push-") as tmp:
        settings = Settings(
            store="sqlite",
            db=str(Path(tmp) / "pulse.db"),
            auth=False,
            max_streams=args.streams + 10,
            live_interval_seconds=10,  # the watcher is driven by hand below
        )
        pulse, writer = bootstrap(settings), bootstrap(settings)
        worker = writer.worker()

        def sale(number: int) -> None:
            at = datetime.now(UTC)
            pulse.store.ingest([Event(id=f"sale-{number}", type="sale", occurred_at=at, properties={})])
            worker.catch_up()

        sale(0)
        client = create_app(pulse=pulse).test_client()
        bodies = []
        for _ in range(args.streams):
            response = client.get(
                "/graphql", query_string={"query": QUERY}, headers={"Accept": "text/event-stream"}, buffered=False
            )
            body = iter(response.response)
            first = next(body)
            assert first.startswith(b"event: next"), first[:200]
            bodies.append(body)
        watcher = live_watcher(pulse)
        watcher.stop()

        profile = cProfile.Profile()
        cpu, size = 0.0, 0
        for number in range(1, args.pushes + 1):
            sale(number)
            watcher.poll()
            started = time.process_time()
            if args.profile:
                profile.enable()
            for body in bodies:
                size = len(next(body))
            if args.profile:
                profile.disable()
            cpu += time.process_time() - started
        for body in bodies:
            body.close()  # type: ignore[attr-defined]
        pulse.close()
        writer.close()

    per_push = cpu * 1000 / (args.streams * args.pushes)
    print(
        f"{args.streams} streams x {args.pushes} pushes ({size} B each): {per_push:.3f} ms CPU per push per"
        f" subscriber{' (under cProfile)' if args.profile else ''}"
    )
    if args.profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue())


if __name__ == "__main__":
    main()
