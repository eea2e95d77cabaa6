"""Writing a batch's counter cells to SQLite in as few bound values as possible.

Python's ``sqlite3`` spends 80 ns binding an integer or a float and 160 ns binding a
string (it copies it), and 400 ns binding a None: binding a cell's ten columns cost more
than SQLite's upsert of the row (``bench/counter_upserts.py``). So each statement upserts
up to ``ROWS_PER_STATEMENT`` cells of one metric and resolution (bound once, as ``?1`` and
``?2``) and one number of dimensions (the missing ones are ``''`` in the SQL), and binds
only what a cell's delta needs:

- one value (count 1, sum = min = max: most minute cells of a sparse catch-up): the value;
- a count (sum 0, no min or max: the built-in counts, count metrics): the count;
- anything else: count, sum, min and max.

Cells go in key order within a statement, so an upsert walks the primary key's B-tree
page after page. What is left over after the whole statements goes one cell per statement
(statements of every remainder's size would crowd the connection's statement cache).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from functools import cache
from itertools import chain

from domain.metrics import MAX_DIMENSIONS
from domain.ports import CounterDelta, CounterKey

#: Cells per statement: at most 2 + 64 × 8 = 514 bound values, under the 999 of SQLite
#: builds older than 3.32.
ROWS_PER_STATEMENT = 64

_ONE_VALUE, _COUNT, _ANY = 1, 2, 3  # a delta's shape: the number of values it binds is 1, 1, 4

#: The upsert of the cells in ``{rows}``: counts and sums add, minima and maxima combine.
UPSERT_CELLS = """
INSERT INTO counters (metric, resolution, bucket, d1, d2, d3, count, total, low, high)
VALUES {rows}
ON CONFLICT DO UPDATE SET
    count = count + excluded.count,
    total = total + excluded.total,
    low = min(coalesce(low, excluded.low), coalesce(excluded.low, low)),
    high = max(coalesce(high, excluded.high), coalesce(excluded.high, high))
"""


def _bound_per_cell(dimensions: int, shape: int) -> int:
    return 1 + dimensions + (4 if shape == _ANY else 1)


@cache
def upsert_statement(dimensions: int, shape: int, cells: int) -> str:
    """The upsert of ``cells`` cells of one metric (``?1``) and resolution (``?2``), each
    binding its bucket, its ``dimensions`` values and its delta of ``shape``."""
    per_cell = _bound_per_cell(dimensions, shape)
    rows = []
    for cell in range(cells):
        first = 3 + cell * per_cell
        bound = [f"?{first + i}" for i in range(per_cell)]
        bucket, values, delta = bound[0], bound[1 : 1 + dimensions], bound[1 + dimensions :]
        padded = values + ["''"] * (MAX_DIMENSIONS - dimensions)
        if shape == _ONE_VALUE:
            delta = ["1", delta[0], delta[0], delta[0]]
        elif shape == _COUNT:
            delta = [delta[0], "0.0", "NULL", "NULL"]
        rows.append(f"(?1, ?2, {bucket}, {', '.join(padded)}, {', '.join(delta)})")
    return UPSERT_CELLS.format(rows=", ".join(rows))


def _groups(cells: Mapping[CounterKey, CounterDelta]) -> dict[tuple[str, str, int, int], list[tuple]]:
    """The cells by (metric, resolution, number of dimensions, delta shape), each as the
    values it binds after ``?1`` and ``?2``."""
    groups: dict[tuple[str, str, int, int], list[tuple]] = {}
    for (metric, resolution, bucket, dims), (count, total, low, high) in cells.items():
        if count == 1 and low == total and high == total:
            group, row = (metric, resolution, len(dims), _ONE_VALUE), (bucket, *dims, total)
        elif low is None and high is None and total == 0.0:
            group, row = (metric, resolution, len(dims), _COUNT), (bucket, *dims, count)
        else:
            group, row = (metric, resolution, len(dims), _ANY), (bucket, *dims, count, total, low, high)
        rows = groups.get(group)
        if rows is None:
            groups[group] = [row]
        else:
            rows.append(row)
    return groups


def _statements(cells: Mapping[CounterKey, CounterDelta]) -> Iterator[tuple[str, list[list]]]:
    for (metric, resolution, dimensions, shape), rows in sorted(_groups(cells).items()):
        # Keys are unique within a group, so the sort never compares the deltas.
        rows.sort()
        per_cell = _bound_per_cell(dimensions, shape)
        width = ROWS_PER_STATEMENT * per_cell
        whole = len(rows) - len(rows) % ROWS_PER_STATEMENT
        if whole:
            flat = list(chain.from_iterable(rows[:whole]))
            blocks = [[metric, resolution, *flat[i : i + width]] for i in range(0, whole * per_cell, width)]
            yield upsert_statement(dimensions, shape, ROWS_PER_STATEMENT), blocks
        if whole < len(rows):
            yield upsert_statement(dimensions, shape, 1), [[metric, resolution, *row] for row in rows[whole:]]


def upsert_counters(conn: sqlite3.Connection, cells: Mapping[CounterKey, CounterDelta]) -> None:
    """Add ``cells`` to the ``counters`` table (inside the caller's transaction)."""
    for sql, bindings in _statements(cells):
        conn.executemany(sql, bindings)
