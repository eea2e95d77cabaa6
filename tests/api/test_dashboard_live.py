"""``dashboardUpdated`` driven in-process on a real SQLite store and worker: a posted sale
pushes the new values to an anonymous viewer of a public dashboard, a published edit
pushes the new definition, viewers share one computation, and a private dashboard is
not found for anonymous viewers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from graphql import GraphQLError

from api.graphql_dashboards import _follow, live_dashboard
from api.graphql_live import live_watcher
from bootstrap import Pulse, bootstrap
from bootstrap import Worker as SqliteWorker
from domain.access import Principal
from domain.clock import FrozenClock
from domain.events import Event
from domain.settings import Settings
from services.dashboards import ANONYMOUS, CURRENT

EDITOR = Principal(key_id="0011223344556677", name="designer", scopes=frozenset({"editor"}))
WIDGETS = [
    {"id": "sales", "kind": "KPI", "title": "Sales", "source": {"kind": "SERIES", "metric": "sale", "last": 24}},
    {"id": "feed", "kind": "RECENT_EVENTS", "title": "Latest", "source": {"kind": "RECENT_EVENTS", "limit": 3}},
]


@pytest.fixture
def pulse(sqlite_settings: Settings, clock: FrozenClock) -> Iterator[Pulse]:
    settings = Settings(store="sqlite", db=sqlite_settings.db, live_interval_seconds=0.02, auth=True)
    pulse = bootstrap(settings, clock=clock)
    yield pulse
    pulse.close()


@pytest.fixture
def worker(pulse: Pulse) -> Iterator[SqliteWorker]:
    own = bootstrap(pulse.settings, clock=pulse.clock)
    yield own.worker()
    own.close()


def sale(i: int, at: float) -> Event:
    return Event(id=f"sale-{i}", type="sale", occurred_at=datetime.fromtimestamp(at, UTC), properties={"n": i})


def kpi(dashboard) -> float:
    return dashboard.widgets[0].data.kpi.value


def test_a_sale_and_a_published_edit_are_pushed_to_an_anonymous_viewer(
    pulse: Pulse, worker: SqliteWorker, clock: FrozenClock
) -> None:
    pulse.store.ingest([sale(1, clock.now() - 60)])
    worker.catch_up()
    pulse.dashboards.create(EDITOR, "shop", {"name": "Shop", "visibility": "PUBLIC"}, WIDGETS)
    pulse.dashboards.publish(EDITOR, "shop")

    def renew():
        return live_dashboard(pulse, ANONYMOUS, "shop", CURRENT)

    async def scenario() -> None:
        live = renew()
        first = live.current()
        assert kpi(first) == 1 and [e.id for e in first.widgets[1].data.events] == ["sale-1"]
        pushed: asyncio.Queue = asyncio.Queue()

        async def consume() -> None:
            async for value in _follow(live, first, renew):
                await pushed.put(value)

        consumer = asyncio.create_task(consume())
        try:
            assert await pushed.get() is first
            pulse.store.ingest([sale(2, clock.now() - 30)])
            worker.catch_up()
            after_sale = await asyncio.wait_for(pushed.get(), 10)
            assert kpi(after_sale) == 2 and after_sale.widgets[1].data.events[0].id == "sale-2"

            # A published edit: the new definition is pushed, and its new widget follows its own data.
            pulse.dashboards.add_widget(EDITOR, "shop", {**WIDGETS[0], "id": "sales-2"})
            pulse.dashboards.update_widget(EDITOR, "shop", {**WIDGETS[0], "title": "Sales today"})
            pulse.dashboards.publish(EDITOR, "shop", "renamed")
            edited = await asyncio.wait_for(pushed.get(), 10)  # draft edits are not pushed to viewers
            assert edited.version == 2 and edited.widgets[0].title == "Sales today"
            assert [w.id for w in edited.widgets] == ["sales", "feed", "sales-2"]
            pulse.store.ingest([sale(3, clock.now() - 10)])
            worker.catch_up()
            assert kpi(await asyncio.wait_for(pushed.get(), 10)) == 3
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer

    asyncio.run(scenario())
    assert live_watcher(pulse).stats().subscribers == 0


def test_viewers_of_one_dashboard_share_one_computation(pulse: Pulse, worker: SqliteWorker, clock: FrozenClock) -> None:
    pulse.store.ingest([sale(1, clock.now())])
    worker.catch_up()
    pulse.dashboards.create(EDITOR, "shop", {"name": "Shop", "visibility": "PUBLIC"}, WIDGETS)
    pulse.dashboards.publish(EDITOR, "shop")
    watcher = live_watcher(pulse)
    before = watcher.stats().recomputations
    values = [live_dashboard(pulse, ANONYMOUS, "shop", CURRENT).current() for _ in range(20)]
    assert all(value is values[0] for value in values)
    assert watcher.stats().recomputations - before == 1


def test_a_private_dashboard_does_not_exist_for_anonymous_viewers(pulse: Pulse) -> None:
    pulse.dashboards.create(EDITOR, "plans", {"name": "Plans", "visibility": "PRIVATE"}, WIDGETS)
    pulse.dashboards.publish(EDITOR, "plans")
    with pytest.raises(GraphQLError) as hidden:
        live_dashboard(pulse, ANONYMOUS, "plans", CURRENT).current()
    assert hidden.value.extensions["code"] == "NOT_FOUND"


def test_a_replaced_dataset_is_pushed(pulse: Pulse) -> None:
    from domain.datasets import parse_csv

    pulse.datasets.upload(EDITOR, "prices", parse_csv(b"product,price\nlatte,4.2\n"), replace=False)
    table = {"id": "prices", "kind": "TABLE", "title": "Prices", "source": {"kind": "DATASET", "dataset": "prices"}}
    pulse.dashboards.create(EDITOR, "menu", {"name": "Menu", "visibility": "PUBLIC"}, [table])
    pulse.dashboards.publish(EDITOR, "menu")

    def renew():
        return live_dashboard(pulse, ANONYMOUS, "menu", CURRENT)

    async def scenario() -> None:
        live = renew()
        first = live.current()
        assert first.widgets[0].data.table.rows == [["latte", 4.2]]
        stream = _follow(live, first, renew)
        try:
            assert await anext(stream) is first
            pulse.datasets.upload(EDITOR, "prices", parse_csv(b"product,price\nlatte,4.5\n"), replace=True)
            replaced = await asyncio.wait_for(anext(stream), 10)
            assert replaced.widgets[0].data.table.rows == [["latte", 4.5]]
        finally:
            await stream.aclose()

    asyncio.run(scenario())


def test_a_dynamic_dataset_widget_is_live(pulse: Pulse, worker: SqliteWorker, clock: FrozenClock) -> None:
    from domain.widgets import parse_source

    pulse.store.ingest([sale(1, clock.now())])
    worker.catch_up()
    query = parse_source({"kind": "RECENT_EVENTS", "eventType": "sale", "limit": 5})
    pulse.datasets.define(EDITOR, "latest", query, replace=False)
    table = {"id": "latest", "kind": "TABLE", "title": "Latest", "source": {"kind": "DATASET", "dataset": "latest"}}
    pulse.dashboards.create(EDITOR, "feed", {"name": "Feed", "visibility": "PUBLIC"}, [table])
    pulse.dashboards.publish(EDITOR, "feed")

    def renew():
        return live_dashboard(pulse, ANONYMOUS, "feed", CURRENT)

    async def scenario() -> None:
        live = renew()
        first = live.current()
        assert [row[0] for row in first.widgets[0].data.table.rows] == ["sale-1"]
        stream = _follow(live, first, renew)
        try:
            assert await anext(stream) is first
            pulse.store.ingest([sale(2, clock.now())])
            worker.catch_up()
            pushed = await asyncio.wait_for(anext(stream), 10)
            assert [row[0] for row in pushed.widgets[0].data.table.rows] == ["sale-2", "sale-1"]
        finally:
            await stream.aclose()

    asyncio.run(scenario())
