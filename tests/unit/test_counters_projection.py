"""The pure projection: which facts count where, and how batches combine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain import metrics as defs
from domain.events import FACTS_STREAM, RecordedEvent
from projections.buckets import Bucketing
from projections.counters import MetricsProjection, merge

T0 = datetime(2026, 11, 23, 23, 59, 30, tzinfo=UTC)
REVENUE = defs.validate_metric("revenue", "sale", "sum", "amount", ["category", "store"])
WEB = defs.validate_metric("web_orders", "sale", "count", None, [], [("channel", "web")])
STOCK = defs.validate_gauge("stock", "stock_level", "level", "product")


def fact(n: int, type_: str = "sale", seconds: float = 0, **props: object) -> RecordedEvent:
    occurred = T0 + timedelta(seconds=seconds)
    return RecordedEvent(
        id=f"f{n:03d}",
        type=type_,
        occurred_at=occurred,
        properties=props,
        source=None,
        stream_id=FACTS_STREAM,
        version=None,
        position=n,
        received_at=occurred,
    )


def project(*facts: RecordedEvent, timezone: str = "UTC"):
    return MetricsProjection([REVENUE, WEB], [STOCK], Bucketing(timezone)).project(list(facts))


def test_one_fact_adds_to_a_cell_per_resolution() -> None:
    changes = project(fact(1, amount=12.5, category="tea", store="a"))
    revenue = {k: v for k, v in changes.counters.items() if k[0] == "revenue"}
    minute, hour, day = (int(T0.timestamp()) // s * s for s in (60, 3600, 86400))
    assert revenue == {
        ("revenue", "minute", minute, ("tea", "a")): (1, 12.5, 12.5, 12.5),
        ("revenue", "hour", hour, ("tea", "a")): (1, 12.5, 12.5, 12.5),
        ("revenue", "day", day, ("tea", "a")): (1, 12.5, 12.5, 12.5),
    }
    assert changes.event_types == {"sale": 1}
    assert changes.counters[("type:sale", "day", day, ())] == (1, 0.0, None, None)
    assert changes.events == 1


def test_cells_are_pre_aggregated_within_a_batch() -> None:
    changes = project(
        fact(1, amount=10, category="tea", store="a"),
        fact(2, seconds=10, amount=30, category="tea", store="a"),
        fact(3, seconds=20, amount=20, category="tea", store="a"),
    )
    day = int(T0.timestamp()) // 86400 * 86400
    assert changes.counters[("revenue", "day", day, ("tea", "a"))] == (3, 60.0, 10.0, 30.0)
    assert sum(1 for k in changes.counters if k[0] == "revenue") == 3


def test_a_fact_just_after_midnight_lands_in_the_next_local_day() -> None:
    # 00:00:10 UTC on the 24th is 01:00:10 in Paris, 19:00:10 on the 23rd in New York.
    paris = project(fact(1, seconds=40, amount=1, category="x", store="y"), timezone="Europe/Paris")
    ny = project(fact(1, seconds=40, amount=1, category="x", store="y"), timezone="America/New_York")
    paris_days = {k[2] for k in paris.counters if k[1] == "day"}
    ny_days = {k[2] for k in ny.counters if k[1] == "day"}
    assert paris_days == {int(datetime(2026, 11, 23, 23, tzinfo=UTC).timestamp())}
    assert ny_days == {int(datetime(2026, 11, 23, 5, tzinfo=UTC).timestamp())}


def test_missing_dimensions_count_under_a_placeholder_and_bad_values_not_at_all() -> None:
    changes = project(
        fact(1, amount=5),  # no category, no store
        fact(2, amount="5"),  # a string is not a number
        fact(3, amount=True, category="x", store="y"),  # neither is a boolean
        fact(4, category="x", store="y"),  # no amount
        fact(5, amount=None, category="x", store="y"),
    )
    revenue = {k[3]: v for k, v in changes.counters.items() if k[0] == "revenue" and k[1] == "day"}
    assert revenue == {("(none)", "(none)"): (1, 5.0, 5.0, 5.0)}
    assert changes.event_types == {"sale": 5}


def test_filters_are_equalities_on_the_text_of_properties() -> None:
    changes = project(fact(1, channel="web"), fact(2, channel="store"), fact(3), fact(4, channel="web"))
    web = [v for k, v in changes.counters.items() if k[0] == "web_orders" and k[1] == "day"]
    assert web == [(2, 0.0, None, None)]


def test_gauges_keep_the_latest_reading_whatever_the_order() -> None:
    early = fact(1, "stock_level", seconds=0, product="mug", level=10)
    late = fact(2, "stock_level", seconds=5, product="mug", level=3)
    tie = fact(3, "stock_level", seconds=5, product="mug", level=7)  # same instant, greater id wins
    forward = project(early, late, tie).gauges
    backward = project(tie, late, early).gauges
    assert forward == backward
    assert forward[("stock", "mug")].value == 7.0 and forward[("stock", "mug")].event_id == "f003"


def test_merging_batches_equals_projecting_them_together() -> None:
    facts = [
        fact(i, seconds=i * 7, amount=i, category=["a", "b"][i % 2], store="s", channel="web") for i in range(40)
    ] + [fact(100 + i, "stock_level", seconds=i, product="mug", level=i) for i in range(5)]
    whole = project(*facts)
    halves = merge([project(*facts[:17]), project(*facts[17:])])
    assert halves.counters == whole.counters
    assert halves.gauges == whole.gauges
    assert halves.event_types == whole.event_types and halves.events == whole.events
    assert halves.watermark == whole.watermark


def test_aggregate_events_are_not_facts_but_an_empty_batch_is_fine() -> None:
    changes = project()
    assert changes.counters == {} and changes.watermark is None and changes.events == 0
