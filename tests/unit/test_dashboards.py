"""The dashboard aggregate: lifecycle, edits, copies, validation and racing edits."""

from __future__ import annotations

from datetime import datetime

import pytest

from domain import dashboards as dash
from domain.access import Principal
from domain.clock import FrozenClock, now_utc
from domain.errors import ConcurrencyError, NotFound, ValidationError
from storage.memory import MemoryEventStore

ALICE = Principal(key_id="a1b2c3d4e5f60708", name="alice", scopes=frozenset({"editor"}))
BOB = Principal(key_id="0807f6e5d4c3b2a1", name="bob", scopes=frozenset({"admin"}))

KPI = {"id": "revenue", "kind": "KPI", "title": "Revenue", "source": {"kind": "SERIES", "metric": "revenue"}}
TEXT = {"id": "intro", "kind": "TEXT", "title": "About", "markdown": "# Sales"}


@pytest.fixture
def store() -> MemoryEventStore:
    return MemoryEventStore()


@pytest.fixture
def now(clock: FrozenClock) -> datetime:
    return now_utc(clock)


def fields(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [error.field for error in exc.value.errors]


def states(dashboard: dash.Dashboard) -> list[tuple[int, str]]:
    return [(v.number, v.state) for v in dashboard.versions]


def test_draft_publish_new_draft_publish_again_leaves_the_old_version_inactive(store, now) -> None:
    created = dash.create(store, ALICE, "sales", {"name": "Sales", "tags": ["shop"]}, now)
    assert states(created) == [(1, dash.DRAFT)]
    dash.add_widget(store, ALICE, "sales", KPI, now)
    first = dash.publish(store, ALICE, "sales", now, release_notes="first cut")
    assert states(first) == [(1, dash.PUBLISHED)]
    assert first.published.release_notes == "first cut" and first.published.published_by == "alice"

    # Editing a published dashboard opens a draft copied from it; the published one is untouched.
    edited = dash.add_widget(store, BOB, "sales", TEXT, now, index=0)
    assert states(edited) == [(1, dash.PUBLISHED), (2, dash.DRAFT)]
    assert [w.id for w in edited.published.definition.widgets] == ["revenue"]
    assert [w.id for w in edited.draft.definition.widgets] == ["intro", "revenue"]
    assert edited.current.number == 1  # what viewers see until the draft is published

    second = dash.publish(store, BOB, "sales", now, release_notes="intro text")
    assert states(second) == [(1, dash.INACTIVE), (2, dash.PUBLISHED)]
    assert second.published.published_by == "bob"


def test_at_most_one_draft(store, now) -> None:
    dash.create(store, ALICE, "sales", {"name": "Sales"}, now)
    dash.publish(store, ALICE, "sales", now)
    opened = dash.open_draft(store, ALICE, "sales", now)
    again = dash.open_draft(store, BOB, "sales", now)
    assert states(again) == [(1, dash.PUBLISHED), (2, dash.DRAFT)]
    assert again.version == opened.version  # nothing appended the second time


def test_archive_retires_the_published_version_and_drops_the_draft(store, now) -> None:
    dash.create(store, ALICE, "sales", {"name": "Sales"}, now)
    dash.publish(store, ALICE, "sales", now)
    dash.open_draft(store, ALICE, "sales", now)
    archived = dash.archive(store, BOB, "sales", now)
    assert states(archived) == [(1, dash.ARCHIVED)]
    assert archived.state == dash.ARCHIVED and archived.published is None
    with pytest.raises(ValidationError) as refused:
        dash.archive(store, BOB, "sales", now)
    assert fields(refused) == ["slug"]
    # It can be revived: a new draft from the archived version, then published.
    dash.open_draft(store, ALICE, "sales", now)
    revived = dash.publish(store, ALICE, "sales", now)
    assert states(revived) == [(1, dash.ARCHIVED), (2, dash.PUBLISHED)]


def test_copy_starts_a_new_draft_with_the_latest_definition(store, now) -> None:
    dash.create(store, ALICE, "sales", {"name": "Sales", "visibility": "PUBLIC"}, now, [])
    dash.add_widget(store, ALICE, "sales", KPI, now)
    copied = dash.copy(store, BOB, "sales", "sales-2027", now)
    assert states(copied) == [(1, dash.DRAFT)]
    assert copied.copied_from == "sales"
    assert copied.current.definition.name == "Sales (copy)"
    assert copied.current.definition.visibility == "PUBLIC"
    assert [w.id for w in copied.current.definition.widgets] == ["revenue"]
    assert dash.listed_slugs(store)[0] == ["sales", "sales-2027"]


def test_widgets_are_added_updated_moved_and_removed(store, now) -> None:
    dash.create(store, ALICE, "sales", {"name": "Sales"}, now)
    dash.add_widget(store, ALICE, "sales", KPI, now)
    dash.add_widget(store, ALICE, "sales", TEXT, now)
    dash.update_widget(store, ALICE, "sales", {**TEXT, "markdown": "changed"}, now)
    moved = dash.move_widget(store, ALICE, "sales", "intro", 0, now)
    assert [w.id for w in moved.draft.definition.widgets] == ["intro", "revenue"]
    assert moved.draft.definition.widget("intro").markdown == "changed"
    removed = dash.remove_widget(store, BOB, "sales", "revenue", now)
    assert [w.id for w in removed.draft.definition.widgets] == ["intro"]
    assert removed.draft.updated_by == "bob"


def test_every_change_is_recorded_with_who_made_it(store, now) -> None:
    dash.create(store, ALICE, "sales", {"name": "Sales"}, now)
    dash.add_widget(store, BOB, "sales", KPI, now)
    history = dash.publish(store, ALICE, "sales", now).history
    assert [(c.type, c.by, c.by_key_id) for c in history] == [
        (dash.CREATED, "alice", ALICE.key_id),
        (dash.WIDGET_ADDED, "bob", BOB.key_id),
        (dash.PUBLISHED_EVENT, "alice", ALICE.key_id),
    ]


def test_two_racing_edits_at_one_version_one_conflicts_and_nothing_is_lost(store, now) -> None:
    read = dash.create(store, ALICE, "sales", {"name": "Sales"}, now)
    dash.change_details(store, ALICE, "sales", {"name": "Alice's name"}, now, expected_version=read.version)
    with pytest.raises(ConcurrencyError):
        dash.change_details(store, BOB, "sales", {"name": "Bob's name"}, now, expected_version=read.version)
    assert dash.load(store, "sales").draft.definition.name == "Alice's name"


class _RacingStore(MemoryEventStore):
    """Lets another writer add a widget between a command's read and its append, once."""

    def __init__(self) -> None:
        super().__init__()
        self.race: object = None

    def append(self, stream_id, events, expected_version):  # type: ignore[no-untyped-def]
        race, self.race = self.race, None
        if race is not None:
            race()
        return super().append(stream_id, events, expected_version)


def test_a_race_without_an_expected_version_is_retried_and_keeps_both_edits(now) -> None:
    store = _RacingStore()
    dash.create(store, ALICE, "sales", {"name": "Sales"}, now)
    store.race = lambda: dash.add_widget(store, BOB, "sales", TEXT, now)
    after = dash.add_widget(store, ALICE, "sales", KPI, now)
    assert [w.id for w in after.draft.definition.widgets] == ["intro", "revenue"]


def test_slugs_are_unique_and_url_safe(store, now) -> None:
    dash.create(store, ALICE, "sales", {"name": "Sales"}, now)
    with pytest.raises(ValidationError) as taken:
        dash.create(store, BOB, "sales", {"name": "Other"}, now)
    assert fields(taken) == ["slug"]
    with pytest.raises(ValidationError) as bad:
        dash.create(store, BOB, "Sales Dashboard!", {"name": "Other"}, now)
    assert fields(bad) == ["slug"]


def test_validation_names_every_bad_field(store, now) -> None:
    with pytest.raises(ValidationError) as bad:
        dash.create(store, ALICE, "sales", {"name": "", "tags": ["OK!"], "visibility": "SECRET"}, now)
    assert fields(bad) == ["name", "tags[0]", "visibility"]
    dash.create(store, ALICE, "sales", {"name": "Sales"}, now)
    widget = {
        "id": "c",
        "kind": "CHART",
        "title": "Split",
        "chart": "PIE",
        "source": {"kind": "SERIES", "metric": "revenue", "last": 0},
        "layout": {"x": 8, "w": 6},
    }
    with pytest.raises(ValidationError) as bad_widget:
        dash.add_widget(store, ALICE, "sales", widget, now)
    assert fields(bad_widget) == ["widget.layout.w", "widget.source.last", "widget.chart"]
    several = {
        "id": "c2",
        "kind": "CHART",
        "title": "Two",
        "source": {"kind": "SERIES", "metric": "a", "metrics": ["b"]},
    }
    with pytest.raises(ValidationError) as not_a_kpi:
        dash.add_widget(store, ALICE, "sales", several, now)
    assert fields(not_a_kpi) == ["widget.source.metrics"]
    with pytest.raises(ValidationError) as no_source:
        dash.add_widget(store, ALICE, "sales", {"id": "g", "kind": "GAUGE", "title": "Stock"}, now)
    assert fields(no_source) == ["widget.source"]
    assert not dash.load(store, "sales").draft.definition.widgets  # nothing half-written


def test_widgets_in_a_section_name_an_existing_section_and_tab(store, now) -> None:
    dash.create(store, ALICE, "sales", {"name": "Sales"}, now)
    section = {"id": "shop", "kind": "SECTION", "title": "Shop", "tabs": ["Today", "Week"]}
    inside = {**TEXT, "layout": {"section": "shop", "tab": "Month"}}
    dash.add_widget(store, ALICE, "sales", section, now)
    with pytest.raises(ValidationError) as bad_tab:
        dash.add_widget(store, ALICE, "sales", inside, now)
    assert fields(bad_tab) == ["widgets[1].layout.tab"]
    dash.add_widget(store, ALICE, "sales", {**TEXT, "layout": {"section": "shop", "tab": "Week"}}, now)
    with pytest.raises(ValidationError) as still_used:
        dash.remove_widget(store, ALICE, "sales", "shop", now)
    assert fields(still_used) == ["widgetId"]


def test_unknown_dashboards_and_widgets(store, now) -> None:
    with pytest.raises(NotFound):
        dash.publish(store, ALICE, "nope", now)
    dash.create(store, ALICE, "sales", {"name": "Sales"}, now)
    with pytest.raises(ValidationError) as missing:
        dash.move_widget(store, ALICE, "sales", "ghost", 0, now)
    assert fields(missing) == ["widgetId"]
    with pytest.raises(ValidationError) as nothing_to_publish:
        dash.publish(store, ALICE, "sales", now)
        dash.publish(store, ALICE, "sales", now)
    assert fields(nothing_to_publish) == ["slug"]
