"""The recent-events feed's fast paths give what the slow ones give: a page whose
``occurredAt`` strictly rises is taken from its end instead of sorted, and a page of one
event type skips the grouping by type; pages with ties, late facts or several types, and
facts given as an iterator, still go the sorting way."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import FACTS_STREAM, RecordedEvent
from domain.ports import ALL_TYPES
from projections.recent import RecentEventsProjection, newest, recency


def fact(position: int, etype: str, micros: int, suffix: str) -> RecordedEvent:
    return RecordedEvent.at_micros(
        f"e{position}{suffix}", etype, micros, {"n": position}, None, FACTS_STREAM, None, position, micros
    )


def slow_newest(events, keep: int) -> list[RecordedEvent]:
    return sorted(events, key=recency, reverse=True)[:keep]


def slow_scopes(events, keep: int) -> dict[str, list[RecordedEvent]]:
    """What the feed keeps per scope, as the projection computed it before its fast paths."""
    scopes = {ALL_TYPES: slow_newest(events, keep)}
    for etype in dict.fromkeys(e.type for e in events):
        scopes[etype] = slow_newest([e for e in events if e.type == etype], keep)
    return scopes


@st.composite
def pages(draw) -> list[RecordedEvent]:
    n = draw(st.integers(min_value=1, max_value=40))
    types = draw(st.lists(st.sampled_from(["sale", "refund", "visit"]), min_size=1, max_size=3, unique=True))
    if draw(st.booleans()):  # rising times (a catch-up page), else anything: ties, late facts
        steps = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=n, max_size=n))
        times = [sum(steps[: i + 1]) for i in range(n)]
    else:
        times = draw(st.lists(st.integers(min_value=-3, max_value=3), min_size=n, max_size=n))
    suffixes = draw(st.lists(st.sampled_from(["", "a", "z"]), min_size=n, max_size=n))  # ids out of position order
    return [
        fact(i, draw(st.sampled_from(types)), t * 60_000_000, s)
        for i, (t, s) in enumerate(zip(times, suffixes, strict=True))
    ]


@settings(max_examples=300, deadline=None)
@given(pages(), st.integers(min_value=-2, max_value=45), st.booleans())
def test_newest_equals_sorting(events: list[RecordedEvent], keep: int, as_tuple: bool) -> None:
    given_events = tuple(events) if as_tuple else events
    assert newest(given_events, keep) == slow_newest(events, keep)
    assert newest(iter(events), keep) == slow_newest(events, keep)


@settings(max_examples=300, deadline=None)
@given(pages(), st.integers(min_value=1, max_value=45))
def test_the_feeds_changes_equal_the_slow_paths(events: list[RecordedEvent], keep: int) -> None:
    changes = RecentEventsProjection(keep).project(tuple(events))
    expected = slow_scopes(events, keep)
    assert changes.scopes == expected
    assert list(changes.scopes) == list(expected)
    assert changes.events == len(events)
    assert changes.watermark == max(e.occurred_micros for e in events)


def test_a_rising_page_of_one_type_keeps_its_last_facts_newest_first() -> None:
    page = tuple(fact(i, "sale", i * 1_000_000, "") for i in range(1, 11))
    changes = RecentEventsProjection(keep=3).project(page)
    assert [e.position for e in changes.scopes[ALL_TYPES]] == [10, 9, 8]
    assert changes.scopes["sale"] == changes.scopes[ALL_TYPES]
