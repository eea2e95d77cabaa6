"""Parsing uploads into typed tables: inference, overrides, and refusals naming row and column."""

from __future__ import annotations

import pytest

from domain import datasets as ds
from domain.errors import ValidationError


def fields(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [error.field for error in exc.value.errors]


def test_types_are_inferred_per_column_and_empty_cells_are_null() -> None:
    table = ds.parse_csv(b"\xef\xbb\xbfa,b,c,d\n1,yes,2026-01-01T10:00:00Z,x\n2.5,no,,\n")  # with a BOM
    assert [(c.name, c.type) for c in table.columns] == [
        ("a", ds.NUMBER),
        ("b", ds.BOOLEAN),
        ("c", ds.DATETIME),
        ("d", ds.TEXT),
    ]
    assert table.rows == ((1.0, True, "2026-01-01T10:00:00+00:00", "x"), (2.5, False, None, None))


def test_an_override_applies_and_a_value_it_refuses_is_named() -> None:
    assert ds.parse_csv(b"code\n001\n", {"code": ds.TEXT}).rows == (("001",),)
    with pytest.raises(ValidationError) as bad:
        ds.parse_csv(b"code,n\n001,1\nx,y\nz,2\n", {"code": ds.NUMBER, "n": ds.NUMBER})
    assert fields(bad) == ["rows[2].code", "rows[2].n", "rows[3].code"]
    assert bad.value.errors[0].message == "row 2, column 'code': 'x' is not a number"


def test_json_rows_take_columns_in_order_and_refuse_nested_values() -> None:
    table = ds.parse_json([{"a": 1}, {"b": True, "a": 2}])
    assert [c.name for c in table.columns] == ["a", "b"] and table.rows == ((1.0, None), (2.0, True))
    with pytest.raises(ValidationError) as nested:
        ds.parse_json([{"a": 1}, {"a": {"x": 1}}])
    assert fields(nested) == ["rows[2].a"]


def test_limits_are_too_large_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ds, "MAX_COLUMNS", 2)
    with pytest.raises(ds.DatasetTooLarge) as wide:
        ds.parse_csv(b"a,b,c\n1,2,3\n")
    assert wide.value.errors[0].field == "columns.c"


def test_duplicate_and_missing_column_names() -> None:
    with pytest.raises(ValidationError) as bad:
        ds.parse_csv(b"a,a,\n1,2,3\n")
    assert fields(bad) == ["columns[1]", "columns[2]"]
