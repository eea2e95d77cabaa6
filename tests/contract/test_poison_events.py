"""The issue's "Done when" for parked events, on every backend through its real worker:
an event that makes a projection raise is parked after the retries, the other events and
the other projections go on, and `retryParked` after the fix applies it exactly once.

The scenario: a release of the recent-events feed formats ``amount`` and trips on a sale
whose amount a till sent as text; the counters read model is unaffected. Then the fix is
deployed (``broken = False``) and an operator retries the parked event.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from api.graphql_metrics import projections_of
from bootstrap import Pulse, WorkerOptions
from domain.access import OPEN_ACCESS
from domain.errors import NotFound
from domain.events import Event
from domain.parked import is_retry_partition
from projections.counters import PROJECTION, MetricsProjection
from projections.recent import RecentEventsProjection
from services import counters as counters_service
from services.engine import ProjectionEngine, ReadModelHandler
from services.parked import ParkedService
from tests.support import real_now
from workers import stream_projector

NOW = real_now().replace(microsecond=0)
RETRIES = 2


class FormatsAmounts(RecentEventsProjection):
    """The recent-events projection with a bug: a text amount raises while ``broken``."""

    broken = True

    def project(self, events):
        for event in events:
            amount = event.properties.get("amount")
            if self.broken and amount is not None:
                f"{amount:.2f}"  # the release's formatting: ValueError on a str
        return super().project(events)


def sale(event_id: str, amount: object, minutes_ago: float) -> Event:
    return Event(
        id=event_id, type="sale", occurred_at=NOW - timedelta(minutes=minutes_ago), properties={"amount": amount}
    )


@pytest.fixture(autouse=True)
def handlers_closed(pulse: Pulse, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every handler a test builds is closed after it, as a worker closes its engine: an
    alerts handler's delivery thread must not outlive the stores it reads (at exit it logged
    "no such table" against a deleted test file)."""
    built: list = []
    make = pulse.backend.handlers

    def handlers(options: WorkerOptions) -> list:
        made = make(options)
        built.extend(made)
        return made

    monkeypatch.setattr(pulse.backend, "handlers", handlers)
    yield
    for handler in built:
        handler.close()


def rigged(pulse: Pulse) -> tuple[FormatsAmounts, list, object]:
    """The backend's handlers with the faulty recent feed, on an engine that parks, and its worker."""
    options = WorkerOptions(batch_size=50)
    fragile = FormatsAmounts()
    handlers = [
        ReadModelHandler(fragile, pulse.backend.recent) if h.name == fragile.name else h
        for h in pulse.backend.handlers(options)
    ]
    engine = ProjectionEngine(handlers, retry_seconds=0, parked=pulse.parked, retries=RETRIES)
    return fragile, handlers, pulse.backend.worker(engine, options, pulse.clock)


def recent_ids(pulse: Pulse) -> list[str]:
    return sorted(e.id for e in pulse.recent.recent_events("sale", 50))


def test_a_poison_event_is_parked_the_rest_goes_on_and_a_retry_applies_it_once(pulse: Pulse) -> None:
    fragile, handlers, worker = rigged(pulse)
    pulse.store.ingest([sale("s1", 10, 9), sale("s2", 20, 8), sale("bad", "12,50", 7), sale("s3", 30, 6)])
    worker.catch_up()

    (parked,) = pulse.parked.list()
    assert (parked.projection, parked.event_id, parked.attempts) == (fragile.name, "bad", RETRIES + 1)
    assert "ValueError" in parked.error and parked.event.properties == {"amount": "12,50"}
    assert parked.first_failure <= parked.last_failure
    # The other events of that projection, and the other projections, went on.
    assert recent_ids(pulse) == ["s1", "s2", "s3"]
    assert pulse.views.event_types()["sale"] == 4
    status = [s for s in projections_of(pulse, OPEN_ACCESS) if s.name == fragile.name]
    assert status and all(s.parked == 1 for s in status)

    pulse.store.ingest([sale("s4", 40, 5)])
    worker.catch_up()
    assert recent_ids(pulse) == ["s1", "s2", "s3", "s4"] and len(pulse.parked.list()) == 1

    service = ParkedService(pulse.parked, handlers)
    failed = service.retry(OPEN_ACCESS, fragile.name, "bad")  # not fixed yet: stays parked
    assert not failed.applied and failed.still_parked is not None and failed.still_parked.attempts == RETRIES + 2

    fragile.broken = False  # the fix is deployed
    assert service.retry(OPEN_ACCESS, fragile.name, "bad").applied
    assert recent_ids(pulse) == ["bad", "s1", "s2", "s3", "s4"]
    assert pulse.parked.list() == [] and pulse.views.event_types()["sale"] == 5
    with pytest.raises(NotFound):
        service.retry(OPEN_ACCESS, fragile.name, "bad")
    assert all(s.parked == 0 for s in projections_of(pulse, OPEN_ACCESS))


class CountsBadly(MetricsProjection):
    """The counters projection with a bug on one kind of event while ``broken``."""

    broken = True

    def project(self, events):
        if CountsBadly.broken and any(e.properties.get("amount") == "12,50" for e in events):
            raise ValueError("cannot count a text amount")
        return super().project(events)


def test_a_retry_of_a_parked_counter_event_counts_it_exactly_once(
    pulse: Pulse, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (counters_service, stream_projector):  # SQLite and memory, DynamoDB
        monkeypatch.setattr(module, "MetricsProjection", CountsBadly)
    monkeypatch.setattr(CountsBadly, "broken", True)
    options = WorkerOptions(batch_size=50)
    handlers = pulse.backend.handlers(options)
    engine = ProjectionEngine(handlers, retry_seconds=0, parked=pulse.parked, retries=RETRIES)
    worker = pulse.backend.worker(engine, options, pulse.clock)
    pulse.store.ingest([sale("s1", 10, 9), sale("bad", "12,50", 7), sale("s2", 20, 6)])
    worker.catch_up()
    assert [p.event_id for p in pulse.parked.list(PROJECTION)] == ["bad"]
    assert pulse.views.event_types()["sale"] == 2
    assert recent_ids(pulse) == ["bad", "s1", "s2"]  # the other projection took it

    CountsBadly.broken = False
    record = pulse.parked.get(PROJECTION, "bad")
    first, second = ParkedService(pulse.parked, handlers), ParkedService(pulse.parked, pulse.backend.handlers(options))
    assert first.retry(OPEN_ACCESS, PROJECTION, "bad").applied
    assert pulse.views.event_types()["sale"] == 3
    # The record's deletion lost (a crash after the commit), then retried by another process: counted once.
    assert record is not None
    pulse.parked.park(record)
    assert second.retry(OPEN_ACCESS, PROJECTION, "bad").applied
    assert pulse.views.event_types()["sale"] == 3 and pulse.parked.list() == []
    # Live projection goes on from where it was; the retry's own checkpoint is not a feed in status.
    pulse.store.ingest([sale("s3", 30, 5)])
    worker.catch_up()
    assert pulse.views.event_types()["sale"] == 4
    assert not any(is_retry_partition(s.partition) for s in projections_of(pulse, OPEN_ACCESS))


def test_two_retries_at_once_count_the_event_once(pulse: Pulse, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (counters_service, stream_projector):  # SQLite and memory, DynamoDB
        monkeypatch.setattr(module, "MetricsProjection", CountsBadly)
    monkeypatch.setattr(CountsBadly, "broken", True)
    options = WorkerOptions(batch_size=50)
    engine = ProjectionEngine(pulse.backend.handlers(options), retry_seconds=0, parked=pulse.parked, retries=0)
    pulse.store.ingest([sale("s1", 10, 9), sale("bad", "12,50", 7)])
    pulse.backend.worker(engine, options, pulse.clock).catch_up()
    assert pulse.views.event_types()["sale"] == 1
    CountsBadly.broken = False

    start = threading.Barrier(2)
    outcomes: list[object] = []

    def retry() -> None:
        service = ParkedService(pulse.parked, pulse.backend.handlers(options))  # as another process would
        start.wait()
        try:
            outcomes.append(service.retry(OPEN_ACCESS, PROJECTION, "bad").applied)
        except NotFound:
            outcomes.append("already retried")

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert True in outcomes and len(outcomes) == 2
    assert pulse.views.event_types()["sale"] == 2 and pulse.parked.list() == []


@pytest.mark.parametrize("settings", ["dynamodb"], indirect=True)
def test_on_dynamodb_a_poison_event_of_the_counters_is_parked_the_shard_goes_on_and_a_retry_counts_it_once(
    pulse: Pulse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_projector, "MetricsProjection", CountsBadly)
    monkeypatch.setattr(CountsBadly, "broken", True)
    options = WorkerOptions(batch_size=50)
    handlers = pulse.backend.handlers(options)
    engine = ProjectionEngine(handlers, retry_seconds=0, parked=pulse.parked, retries=RETRIES)
    pulse.store.ingest([sale("s1", 10, 9), sale("bad", "12,50", 7), sale("s2", 20, 6)])
    pulse.backend.worker(engine, options, pulse.clock).catch_up()

    (parked,) = pulse.parked.list(PROJECTION)
    assert parked.event_id == "bad" and parked.partition  # the shard it came from
    assert pulse.views.event_types()["sale"] == 2
    assert recent_ids(pulse) == ["bad", "s1", "s2"]
    pulse.store.ingest([sale("s3", 30, 5)])
    pulse.backend.worker(engine, options, pulse.clock).catch_up()
    assert pulse.views.event_types()["sale"] == 3
    CountsBadly.broken = False
    service = ParkedService(pulse.parked, handlers)
    assert service.retry(OPEN_ACCESS, PROJECTION, "bad").applied
    assert pulse.views.event_types()["sale"] == 4 and pulse.parked.list() == []
    # The record's deletion lost, retried again: the items' guards of its partition count it once.
    pulse.parked.park(parked)
    assert service.retry(OPEN_ACCESS, PROJECTION, "bad").applied
    assert pulse.views.event_types()["sale"] == 4
    assert all(s.partition == parked.partition for s in projections_of(pulse, OPEN_ACCESS))
