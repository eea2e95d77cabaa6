"""A replay's pages under the live rule for poison events (``services.replay_parking``):
retried, then isolated, parked with the event as stored, and the rest projected."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from domain.events import FACTS_STREAM, RecordedEvent
from services.replay_parking import ReplayParking, scan_partition, scanned_into
from storage.memory_parked import MemoryParkedEvents


def fact(event_id: str, position: int | None = None) -> RecordedEvent:
    return RecordedEvent.at_micros(
        id=event_id,
        type="sale",
        occurred_micros=1_000_000,
        properties={},
        source=None,
        stream_id=FACTS_STREAM,
        version=None,
        position=position,
        received_micros=1_000_000,
    )


class Project:
    """A pure projection (the ids it saw) that raises on ``bad`` while ``broken``."""

    def __init__(self) -> None:
        self.calls = 0
        self.broken = True

    def __call__(self, facts: Sequence[RecordedEvent]) -> list[str]:
        self.calls += 1
        if self.broken and any(f.id == "bad" for f in facts):
            raise ValueError("cannot project bad")
        return [f.id for f in facts]


def test_a_scan_page_with_a_poison_event_parks_it_after_the_retries_and_projects_the_rest() -> None:
    parked = MemoryParkedEvents()
    waits: list[float] = []
    now = [100.0]

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    parking = ReplayParking(parked, retries=2, retry_seconds=0.5, sleep=sleep, monotonic=lambda: now[0])
    project = Project()
    page = [fact("a"), fact("bad"), fact("c")]  # a scan's facts carry no log position

    assert parking.project("metrics", page, project, scan_partition(7)) == ["a", "c"]
    (record,) = parked.list()
    assert (record.projection, record.event_id, record.attempts) == ("metrics", "bad", 3)
    assert record.event == fact("bad", position=1)  # as stored; a retry needs a position
    assert scanned_into(record) == 7 and "cannot project bad" in record.error
    assert waits == [0.5, 1.0]  # the live backoff between the tries


def test_a_clean_page_is_projected_once_and_without_a_parked_store_a_poison_event_fails() -> None:
    project = Project()
    assert ReplayParking(MemoryParkedEvents(), 2, 0).project("metrics", [fact("a")], project) == ["a"]
    assert project.calls == 1
    with pytest.raises(ValueError, match="cannot project bad"):
        ReplayParking(None, 2, 0).project("metrics", [fact("bad")], project)


def test_records_parked_by_the_live_feed_name_no_scan() -> None:
    assert scanned_into(None) is None
