"""The read-through cache of dashboards: another process's edits show once the refresh
interval passed, a command of this process shows at once, and probing slugs that do not
exist leaves nothing behind."""

from __future__ import annotations

from datetime import datetime

from domain import dashboards as dash
from domain.access import Principal
from domain.clock import FrozenClock, now_utc
from services.dashboards import DashboardCache
from storage.memory import MemoryEventStore

EDITOR = Principal(key_id=None, name="designer", scopes=frozenset({"editor"}))


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_other_writers_show_after_the_refresh_interval_and_own_commands_at_once(clock: FrozenClock) -> None:
    store, ticks = MemoryEventStore(), Ticks()
    now: datetime = now_utc(clock)
    cache = DashboardCache(store, refresh_seconds=0.5, clock=ticks)
    cache.put(dash.create(store, EDITOR, "shop", {"name": "Shop"}, now))
    assert cache.get("shop").current.definition.name == "Shop"
    dash.change_details(store, EDITOR, "shop", {"name": "Elsewhere"}, now)  # another process
    assert cache.get("shop").current.definition.name == "Shop"
    ticks.now = 0.5
    assert cache.get("shop").current.definition.name == "Elsewhere"
    dash.create(store, EDITOR, "cafe", {"name": "Cafe"}, now)
    ticks.now = 1.0
    assert [d.slug for d in cache.all()] == ["shop", "cafe"]


def test_probing_unknown_slugs_caches_nothing() -> None:
    cache = DashboardCache(MemoryEventStore())
    for i in range(100):
        assert cache.get(f"nope-{i}") is None
    assert not cache._folds
