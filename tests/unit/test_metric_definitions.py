"""Metric and gauge definitions: validation, the aggregate's fold, and what to rebuild."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain import metrics as defs
from domain.errors import NotFound, ValidationError
from storage.sqlite import SqliteEventStore
from tests.support import in_threads


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteEventStore]:
    events = SqliteEventStore(tmp_path / "pulse.db")
    yield events
    events.close()


def fields(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [error.field for error in exc.value.errors]


def test_a_valid_metric() -> None:
    metric = defs.validate_metric("revenue", "sale", "sum", "amount", ["category", "store"], [("channel", "web")])
    assert metric.key == "revenue" and not metric.builtin
    assert metric.filters == (("channel", "web"),)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("", "sale", "count"), ["input.name"]),
        (("a:b", "sale", "count"), ["input.name"]),
        (("ok", "Sale", "count"), ["input.eventType"]),
        (("ok", "sale", "median"), ["input.aggregation"]),
        (("ok", "sale", "sum"), ["input.valueProperty"]),
        (("ok", "sale", "count", "amount"), ["input.valueProperty"]),
        (("ok", "sale", "count", None, ["a", "b", "c", "d"]), ["input.dimensions"]),
        (("ok", "sale", "count", None, ["a", "a"]), ["input.dimensions"]),
        (("ok", "sale", "count", None, [""]), ["input.dimensions[0]"]),
        (("ok", "sale", "count", None, [], [("store", "1"), ("store", "2")]), ["input.filters"]),
        (("ok", "sale", "count", None, [], [("store", 3)]), ["input.filters[0].value"]),
        (("ok", "sale", "count", None, [], [], "input", 2), ["input.decimals"]),
        (("ok", "sale", "sum", "amount", [], [], "input", -1), ["input.decimals"]),
        (("ok", "sale", "sum", "amount", [], [], "input", 13), ["input.decimals"]),
        (("ok", "sale", "sum", "amount", [], [], "input", 2.5), ["input.decimals"]),
        (("ok", "sale", "count", None, [], [], "input", None, True), ["input.parseNumericStrings"]),
        (("ok", "sale", "sum", "amount", [], [], "input", None, "yes"), ["input.parseNumericStrings"]),
    ],
)
def test_invalid_metrics_name_each_bad_field(args: tuple, expected: list[str]) -> None:
    with pytest.raises(ValidationError) as exc:
        defs.validate_metric(*args)
    assert fields(exc) == expected


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as exc:
        defs.validate_metric("x y", "Sale", "sum", None, ["a", "b", "c", "d"])
    assert fields(exc) == ["input.name", "input.eventType", "input.valueProperty", "input.dimensions"]


def test_dimension_values_as_text() -> None:
    assert [defs.dimension_value(v) for v in ("tea", 3, 3.0, True, False, None, "")] == [
        "tea",
        "3",
        "3.0",
        "true",
        "false",
        "(none)",
        "",
    ]


def test_the_catalog_folds_the_stream_and_knows_what_changed(store: SqliteEventStore) -> None:
    revenue = defs.validate_metric("revenue", "sale", "sum", "amount", ["category"])
    defs.define_metric(store, revenue)  # version 1
    defs.define_gauge(store, defs.validate_gauge("stock", "stock_level", "level", "product"))  # 2
    defs.define_metric(store, defs.validate_metric("orders", "sale", "count"))  # 3
    catalog = defs.load_catalog(store)
    assert catalog.version == 3
    assert catalog.changed_since(0) == (["orders", "revenue"], ["stock"])
    assert catalog.changed_since(2) == (["orders"], [])
    assert catalog.changed_since(3) == ([], [])

    defs.update_metric(store, defs.validate_metric("revenue", "sale", "sum", "amount", ["store"]))  # 4
    defs.delete_gauge(store, "stock")  # 5
    assert catalog.refresh(store) is True
    assert catalog.metrics["revenue"].dimensions == ("store",) and catalog.metrics["revenue"].revision == 4
    assert "stock" not in catalog.gauges
    # A deleted name clears both kinds: it may have been either.
    assert catalog.changed_since(3) == (["revenue", "stock"], ["stock"])
    assert catalog.refresh(store) is False


def test_names_are_unique_across_metrics_gauges_and_event_types(store: SqliteEventStore) -> None:
    defs.define_metric(store, defs.validate_metric("revenue", "sale", "sum", "amount"))
    for attempt in (
        lambda: defs.define_metric(store, defs.validate_metric("revenue", "sale", "count")),
        lambda: defs.define_gauge(store, defs.validate_gauge("revenue", "stock_level", "level")),
        lambda: defs.define_metric(store, defs.validate_metric("sale", "sale", "count"), reserved={"sale"}),
    ):
        with pytest.raises(ValidationError) as exc:
            attempt()
        assert fields(exc) == ["input.name"]
    assert defs.load_catalog(store).version == 1


def test_updating_or_deleting_an_unknown_metric_is_not_found(store: SqliteEventStore) -> None:
    with pytest.raises(NotFound):
        defs.update_metric(store, defs.validate_metric("nope", "sale", "count"))
    with pytest.raises(NotFound):
        defs.delete_metric(store, "nope")
    with pytest.raises(NotFound):
        defs.delete_gauge(store, "nope")


def test_racing_definitions_of_one_name_leave_exactly_one(store: SqliteEventStore) -> None:
    barrier = threading.Barrier(4)
    outcomes: list[object] = []

    def define(n: int) -> None:
        barrier.wait()
        try:
            outcomes.append(defs.define_metric(store, defs.validate_metric("hot", "sale", "count", None, [f"d{n}"])))
        except ValidationError as exc:
            outcomes.append(exc)

    in_threads(define, range(4))
    assert sum(isinstance(o, defs.MetricDefinition) for o in outcomes) == 1
    assert defs.load_catalog(store).version == 1


def test_a_known_event_type_is_a_builtin_count() -> None:
    catalog = defs.MetricCatalog()
    builtin = catalog.metric("page_view", {"page_view": 3})
    assert builtin is not None and builtin.builtin and builtin.key == "type:page_view"
    assert catalog.metric("page_view", {}) is None


def test_parse_numeric_strings_is_kept_in_the_definitions_stream(store: SqliteEventStore) -> None:
    revenue = defs.validate_metric("revenue", "sale", "sum", "amount", parse_numeric_strings=True)
    defs.define_metric(store, revenue)
    assert defs.load_catalog(store).metrics["revenue"].parse_numeric_strings is True
    defs.update_metric(store, defs.validate_metric("revenue", "sale", "sum", "amount"))
    catalog = defs.load_catalog(store)
    assert catalog.metrics["revenue"].parse_numeric_strings is False
    assert catalog.changed_since(1) == (["revenue"], [])  # turning it off rebuilds the metric
