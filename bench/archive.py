"""Archive throughput: facts per second into Parquet on the embedded default (target
≥ 100,000/s), and bytes per fact on disk against the SQLite event store.

    python bench/archive.py [N]

Facts are read from a SQLite store first (not timed), then handed to the archive handler
in pages of 5,000, which writes them to a local folder with the default 64 MiB buffer and
one flush at the end (timed: buffering, Arrow conversion, sorting, zstd, fsync).
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domain.events import Event
from projections.archive import parse_columns
from services.archive import ArchiveHandler
from services.engine import FeedBatch
from storage.blob_local import LocalBlobStore
from storage.sqlite import SqliteEventStore


def main(n: int) -> None:
    rng = random.Random(1)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteEventStore(os.path.join(folder, "pulse.db"))
        for i in range(0, n, 1000):
            store.ingest(
                [
                    Event(
                        type="sale",
                        occurred_at=start + timedelta(seconds=rng.uniform(0, 86400)),
                        properties={"amount": round(rng.uniform(1, 40), 2), "category": rng.choice(["a", "b"]),
                                    "store": rng.choice(["harbor", "market", "station"]), "product": f"p{j % 40}"},
                    )
                    for j in range(i, min(i + 1000, n))
                ]
            )  # fmt: skip
        pages, cursor = [], None
        while (page := store.read_facts(cursor, limit=5000)).events:
            pages.append(page.events)
            cursor = page.cursor
        store.close()
        db_bytes = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.startswith("pulse.db"))
        blobs = LocalBlobStore(os.path.join(folder, "archive"))
        handler = ArchiveHandler(blobs, columns=parse_columns("amount:double,category:string"))
        began = time.perf_counter()
        for events in pages:
            handler.handle(FeedBatch("", events[0].position or 0, events[-1].position or 0, events))
        handler.flush()
        elapsed = time.perf_counter() - began
        archive_bytes = sum(
            os.path.getsize(os.path.join(blobs.root, k)) for k in blobs.list() if k.endswith(".parquet")
        )
        print(f"{n} facts in {elapsed:.2f} s: {n / elapsed:,.0f} facts/s into Parquet (target 100,000/s)")
        print(f"on disk: Parquet {archive_bytes / n:.1f} B/fact, SQLite event store {db_bytes / n:.1f} B/fact")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
