"""The projection worker's fast paths give what the slow ones give: ``loads_all`` (orjson
when it decodes a page exactly as ``json``) and the archive's files when the buffered facts
are in order already (no sort) against the same facts shuffled (sorted)."""

from __future__ import annotations

import json
import random
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import FACTS_STREAM, RecordedEvent
from projections.archive import ArchiveColumn, files_of_rows, read_table, rows_of
from storage.codec import dumps, dumps_properties, loads_all

HOUR = 3_600_000_000
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # big ones too: beyond 64 bits, json keeps them exact
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),  # unicode, escapes, digits
    st.from_regex(r"[0-9]{15,25}", fullmatch=True),  # digit runs inside strings
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
)
properties = st.dictionaries(st.sampled_from(["amount", "category", "n", "ü", "x"]), values, max_size=4)


def typed(value: Any) -> Any:
    """The value with every number's type and exact float spelled out (1 != 1.0, -0.0 != 0.0)."""
    if isinstance(value, dict):
        return {"dict": [(key, typed(item)) for key, item in value.items()]}
    if isinstance(value, list):
        return {"list": [typed(item) for item in value]}
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


@settings(max_examples=300, deadline=None)
@given(st.lists(properties, max_size=30))
def test_a_page_decodes_as_json_decodes_it(pages: list[dict[str, Any]]) -> None:
    texts = [dumps(p) for p in pages]
    assert typed(loads_all(texts)) == typed(json.loads("[" + ",".join(texts) + "]"))


@pytest.mark.parametrize(
    "text",
    [
        '{"n":18446744073709551616}',  # beyond 64 bits: orjson would give a float
        '{"n":-9223372036854775809}',
        '{"n":1E400}',  # beyond any double: json gives inf, orjson refuses
        '{"s":"\\ud800"}',  # an unpaired surrogate: orjson refuses
        '{"a":1,"a":2}',
        '{"z":-0.0,"i":-0}',
        "[" * 300 + "]" * 300,
    ],
)
def test_what_orjson_reads_otherwise_goes_through_json(text: str) -> None:
    assert typed(loads_all([text, '{"amount":1.5}'])) == typed(json.loads(f'[{text},{{"amount":1.5}}]'))


COLUMNS = (ArchiveColumn("amount", "double"), ArchiveColumn("category", "string"), ArchiveColumn("n", "int64"))
facts_spec = st.lists(
    st.tuples(
        st.sampled_from(["sale", "page_view", "sälé"]),
        st.integers(min_value=0, max_value=6),  # minute steps: ties in occurredAt
        st.integers(min_value=-3, max_value=3),  # hours late or early
        properties,
    ),
    min_size=2,  # two buffered parts, neither empty
    max_size=40,
)


def recorded(spec: list[tuple[str, int, int, dict[str, Any]]]) -> list[RecordedEvent]:
    base = 1_764_000_000 * 1_000_000
    facts = []
    for i, (event_type, minute, hours, props) in enumerate(spec):
        at = base + minute * 60_000_000 + hours * HOUR
        text = dumps_properties(props).decode()
        facts.append(
            RecordedEvent.at_micros(f"e{i:03d}", event_type, at, props, None, FACTS_STREAM, None, i + 1, at, text)
        )
    return facts


@settings(max_examples=150, deadline=None)
@given(facts_spec, st.randoms(use_true_random=False))
def test_archive_files_in_order_equal_the_sorted_ones(spec: list, rng: random.Random) -> None:
    facts = recorded(spec)
    ordered = sorted(facts, key=lambda f: (f.type.encode(), f.occurred_micros, f.id))
    shuffled = list(ordered)
    rng.shuffle(shuffled)
    # Split in two buffered parts, as two batches would be.
    cut = len(facts) // 2
    fast = files_of_rows([rows_of(ordered[:cut], COLUMNS), rows_of(ordered[cut:], COLUMNS)], "", 1, len(facts))
    slow = files_of_rows([rows_of(shuffled[:cut], COLUMNS), rows_of(shuffled[cut:], COLUMNS)], "", 1, len(facts))
    assert fast == slow
    rows = [row for data in fast.values() for row in read_table(data).to_pylist()]
    assert sorted(row["id"] for row in rows) == sorted(f.id for f in facts)
    for data in fast.values():
        table = read_table(data).to_pylist()
        keys = [(row["occurred_at"], row["id"]) for row in table]
        assert keys == sorted(keys)


def test_a_file_has_the_same_bytes_however_its_rows_were_buffered() -> None:
    """A pending flush is written again after a restart, from pages of another size: the
    bytes depend on the rows only (the writer cuts pages where an Arrow chunk ends, so a
    file of more than a data page was chunk-dependent)."""
    rng = random.Random(5)
    def note() -> str:  # text zstd cannot shrink much: the file spans several data pages
        return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randrange(300, 500)))

    spec = [("sale", i % 7, 0, {"note": note(), "amount": i}) for i in range(4000)]
    facts = sorted(recorded(spec), key=lambda f: (f.occurred_micros, f.id))
    whole = files_of_rows([rows_of(facts, COLUMNS)], "", 1, len(facts))
    assert len(whole) == 1 and len(next(iter(whole.values()))) > 1_000_000  # a data page is 1 MB
    for cuts in ([1000], [333, 2500, 3999], list(range(100, 4000, 250))):
        bounds = [0, *cuts, len(facts)]
        parts = [rows_of(facts[a:b], COLUMNS) for a, b in pairwise(bounds)]
        assert files_of_rows(parts, "", 1, len(facts)) == whole
