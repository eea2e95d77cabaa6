"""The SQLite view store's counter writes on their own (rows built from a batch's cells, then
upserted), on the cells of a sparse week's catch-up pages (200,000 sales over 7 days in
pages of 20,000: nearly every sale a new minute cell), alternating:

- baseline: each cell bound as its ten columns, one row per statement (``executemany``);
- blocks of 90 such rows per statement (the store until 2026-11-30);
- the store's statements (``storage/sqlite_counter_writes.py``): metric and resolution bound
  once per statement, and only the values a cell's delta needs.

    .venv/bin/python bench/counter_upserts.py            # 3 rounds
"""

from __future__ import annotations

import argparse
import importlib.util
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from itertools import chain
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from domain.ports import CounterDelta, CounterKey  # noqa: E402
from projections.buckets import Bucketing  # noqa: E402
from projections.counters import MetricsProjection  # noqa: E402
from storage.sqlite_counter_writes import UPSERT_CELLS, upsert_counters  # noqa: E402
from storage.sqlite_views import SCHEMA  # noqa: E402

Cells = Mapping[CounterKey, CounterDelta]
PAGE = 20_000
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_PAD = ("", "", "")


def _projection_bench() -> ModuleType:
    """``bench/projections.py``, loaded by its path: its name is the ``projections`` package's."""
    spec = importlib.util.spec_from_file_location("projection_bench", Path(__file__).with_name("projections.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ten_columns(cells: Cells) -> list[tuple]:
    rows = [(m, r, b, *(d + _PAD)[:3], n, total, low, high) for (m, r, b, d), (n, total, low, high) in cells.items()]
    rows.sort()
    return rows


def one_per_statement(conn: sqlite3.Connection, cells: Cells) -> None:
    conn.executemany(UPSERT_CELLS.format(rows=_ROW), ten_columns(cells))


def ninety_per_statement(conn: sqlite3.Connection, cells: Cells) -> None:
    rows = ten_columns(cells)
    whole = len(rows) - len(rows) % 90
    flat = list(chain.from_iterable(rows[:whole]))
    blocks = [flat[i : i + 900] for i in range(0, len(flat), 900)]
    conn.executemany(UPSERT_CELLS.format(rows=", ".join([_ROW] * 90)), blocks)
    conn.executemany(UPSERT_CELLS.format(rows=_ROW), rows[whole:])


def week_pages(events: int) -> list[Cells]:
    """The counter cells of each catch-up page of ``events`` sales over a week, as
    ``bench/projections.py`` makes them."""
    workload = _projection_bench()
    facts = workload.sparse_facts(events)
    projection = MetricsProjection([workload.REVENUE], [], Bucketing("UTC"))
    return [projection.project(facts[i : i + PAGE]).counters for i in range(0, len(facts), PAGE)]


def per_cell_us(write: Callable[[sqlite3.Connection, Cells], None], pages: list[Cells]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "views.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # as the view store
        conn.executescript(SCHEMA)
        started = time.perf_counter()
        for cells in pages:
            conn.execute("BEGIN IMMEDIATE")
            write(conn, cells)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return elapsed / sum(map(len, pages)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pages = week_pages(args.events)
    cells = sum(map(len, pages))
    print(f"SQLite {sqlite3.sqlite_version}; {cells:,} cells of {args.events:,} sales in {len(pages)} pages")
    for n in range(1, args.rounds + 1):
        baseline = per_cell_us(one_per_statement, pages)
        ninety = per_cell_us(ninety_per_statement, pages)
        store = per_cell_us(upsert_counters, pages)
        print(
            f"round {n}: µs per cell (rows built, then upserted): one row per statement {baseline:.2f};"
            f" 90 rows per statement {ninety:.2f}; the store's statements {store:.2f}"
        )


if __name__ == "__main__":
    main()
