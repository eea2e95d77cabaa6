"""The SQLite view store's counter upserts on their own: one row per statement (the baseline,
``executemany`` of the one-row upsert) against the store's blocks of rows per statement
(``storage.sqlite_views._upsert_counters``), on pages shaped like a sparse week's (nearly
every row a new minute cell, sorted as the store sorts them).

    .venv/bin/python bench/counter_upserts.py            # 10 pages of 21,000 rows, 3 rounds
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage.sqlite_views import (  # noqa: E402
    _COUNTER_ROWS_PER_STATEMENT,
    _UPSERT_COUNTER,
    SCHEMA,
    _upsert_counters,
)


def pages(count: int, rows: int, seed: int = 1) -> list[list[tuple]]:
    """``count`` pages of about ``rows`` distinct cells, ten a minute over (category, store)."""
    rng = random.Random(seed)
    out = []
    for page in range(count):
        first = page * rows // 10
        cells = {
            ("revenue", "minute", (first + i // 10) * 60, f"c{rng.randrange(10)}", f"s{rng.randrange(5)}", "")
            for i in range(rows)
        }
        out.append(sorted((*key, 1, 12.5, 12.5, 12.5) for key in cells))
    return out


def one_per_statement(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    conn.executemany(_UPSERT_COUNTER, rows)


def per_row_us(write: Callable[[sqlite3.Connection, list[tuple]], None], data: list[list[tuple]]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "views.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # as the view store
        conn.executescript(SCHEMA)
        started = time.perf_counter()
        for rows in data:
            conn.execute("BEGIN IMMEDIATE")
            write(conn, rows)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return elapsed / sum(map(len, data)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--rows", type=int, default=21_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = pages(args.pages, args.rows)
    print(f"SQLite {sqlite3.sqlite_version}; {sum(map(len, data)):,} rows in {args.pages} pages, alternating")
    for n in range(1, args.rounds + 1):
        baseline = per_row_us(one_per_statement, data)
        blocks = per_row_us(_upsert_counters, data)
        print(
            f"round {n}: one row per statement {baseline:.2f} µs per row;"
            f" {_COUNTER_ROWS_PER_STATEMENT} rows per statement (the store) {blocks:.2f} µs per row"
        )


if __name__ == "__main__":
    main()
