"""Dashboards over GraphQL on both backends: the lifecycle, every widget kind resolved in
one round trip with one watermark, who may see and edit what, conflicts and bad input."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from bootstrap import Pulse, bootstrap
from domain.clock import FrozenClock, now_utc
from domain.keys import create_key
from domain.settings import Settings
from tests.api.conftest import Keys, bearer
from workers.dynamodb_rebuild import RebuildTiming, run_pending_rebuild

WIDGETS = """
  id kind title
  source { kind metric }
  data {
    series { points { value count } previous { value } }
    kpi { value previous changePercent }
    kpis { metric value }
    breakdown { key value }
    gauges { key value }
    events { id type }
    table { columns { name type } rows }
    error { code message }
  }
"""
DASHBOARD = f"slug name state version streamVersion visibility watermark widgets {{ {WIDGETS} }}"

ALL_KINDS = [
    {"id": "intro", "kind": "TEXT", "title": "About", "markdown": "Live from the *shops*"},
    {"id": "logo", "kind": "IMAGE", "title": "Logo", "imageUrl": "https://example.com/logo.png", "alt": "Beans"},
    {"id": "shop", "kind": "SECTION", "title": "Shop", "tabs": ["Sales", "Stock"]},
    {
        "id": "revenue",
        "kind": "KPI",
        "title": "Revenue",
        "source": {"kind": "SERIES", "metric": "revenue", "resolution": "HOUR", "last": 24, "metrics": ["sale"]},
        "layout": {"w": 4},
    },
    {
        "id": "revenue-line",
        "kind": "CHART",
        "title": "Revenue by hour",
        "chart": "LINE",
        "source": {
            "kind": "SERIES",
            "metric": "revenue",
            "resolution": "HOUR",
            "last": 6,
            "compareTo": "PREVIOUS_PERIOD",
        },
        "layout": {"section": "shop", "tab": "Sales"},
    },
    {
        "id": "by-category",
        "kind": "CHART",
        "title": "By category",
        "chart": "DONUT",
        "source": {"kind": "BREAKDOWN", "metric": "revenue", "dimension": "category", "top": 5},
    },
    {
        "id": "category-table",
        "kind": "TABLE",
        "title": "Categories",
        "source": {"kind": "BREAKDOWN", "metric": "revenue", "dimension": "category"},
        "columns": [{"field": "key", "label": "Category", "format": "TEXT"}, {"field": "value", "format": "CURRENCY"}],
    },
    {"id": "stock-table", "kind": "TABLE", "title": "Stock", "source": {"kind": "GAUGE", "gauge": "stock"}},
    {
        "id": "stock",
        "kind": "GAUGE",
        "title": "Beans",
        "source": {"kind": "GAUGE", "gauge": "stock", "keys": ["beans"]},
    },
    {
        "id": "feed",
        "kind": "RECENT_EVENTS",
        "title": "Latest sales",
        "source": {"kind": "RECENT_EVENTS", "eventType": "sale", "limit": 2},
    },
    {
        "id": "prices",
        "kind": "CHART",
        "chart": "BAR",
        "title": "Prices",
        "source": {"kind": "DATASET", "dataset": "prices", "fields": ["product", "price"]},
    },
]


@pytest.fixture
def editor(pulse: Pulse) -> str:
    return create_key(pulse.store, "designer", ["editor"])[1]


def gql(client: FlaskClient, query: str, secret: str | None = None, **variables: Any) -> dict[str, Any]:
    headers = bearer(secret) if secret else {}
    response = client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.status_code == 200, response.data
    return response.json


def ok(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    return body["data"]


def code(body: dict[str, Any]) -> str:
    return body["errors"][0]["extensions"]["code"]


def create(client: FlaskClient, secret: str, slug: str, widgets: list[dict] = (), **details: Any) -> dict[str, Any]:
    query = f"mutation($input: DashboardInput!) {{ createDashboard(input: $input) {{ {DASHBOARD} }} }}"
    return gql(client, query, secret, input={"slug": slug, "name": slug.title(), **details, "widgets": list(widgets)})


def publish(client: FlaskClient, secret: str, slug: str, notes: str = "") -> dict[str, Any]:
    query = (
        "mutation($slug: String!, $notes: String)"
        " { publishDashboard(slug: $slug, releaseNotes: $notes) { state version } }"
    )
    return gql(client, query, secret, slug=slug, notes=notes)


def fetch(client: FlaskClient, slug: str, secret: str | None = None, extra: str = "") -> dict[str, Any]:
    return gql(client, f'{{ dashboard(slug: "{slug}"{extra}) {{ {DASHBOARD} }} }}', secret)


def _counted_shop(client: FlaskClient, keys: Keys, settings: Settings, clock: FrozenClock) -> None:
    for mutation in (
        'defineMetric(input: {name: "revenue", eventType: "sale", aggregation: SUM, valueProperty: "amount",'
        ' dimensions: ["category"]}) { name }',
        'defineGauge(input: {name: "stock", eventType: "stock", valueProperty: "level", keyProperty: "product"})'
        " { name }",
    ):
        ok(gql(client, f"mutation {{ {mutation} }}", keys.admin))
    now = now_utc(clock)
    at = [(now - timedelta(minutes=m)).isoformat() for m in (5, 4, 3)]
    events = [
        {"id": "s1", "type": "sale", "occurredAt": at[0], "properties": {"amount": 4.5, "category": "coffee"}},
        {"id": "s2", "type": "sale", "occurredAt": at[1], "properties": {"amount": 3.0, "category": "coffee"}},
        {"id": "s3", "type": "sale", "occurredAt": at[2], "properties": {"amount": 2.5, "category": "pastry"}},
        {"id": "k1", "type": "stock", "occurredAt": at[2], "properties": {"product": "beans", "level": 12}},
        {"id": "k2", "type": "stock", "occurredAt": at[2], "properties": {"product": "milk", "level": 3}},
    ]
    assert client.post("/v1/events", json={"events": events}, headers=bearer(keys.ingest)).status_code == 202
    own = bootstrap(settings, clock=clock)  # a worker of its own, as `pulse worker` is
    if settings.store == "dynamodb":  # the poller's background task, run once: count the new metrics
        projector = own.backend.counters()
        timing = RebuildTiming(fence_seconds=0.05, settle_seconds=0.05)
        run_pending_rebuild(own.store, own.backend.views, projector.bucketing, projector.history, "test", timing)
    own.worker().catch_up()
    own.close()


def test_every_widget_kind_resolves_in_one_round_trip(
    client: FlaskClient,
    keys: Keys,
    editor: str,
    settings: Settings,
    clock: FrozenClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # DynamoDB without a bucket keeps datasets beside its (relative) db name
    _counted_shop(client, keys, settings, clock)
    prices = {"name": "prices", "data": "product,price\nlatte,4.2\nmuffin,3.1\n"}
    assert client.post("/v1/datasets", json=prices, headers=bearer(editor)).status_code == 201
    created = ok(create(client, editor, "coffee", ALL_KINDS, visibility="PUBLIC"))["createDashboard"]
    assert created["state"] == "DRAFT" and [w["id"] for w in created["widgets"]] == [w["id"] for w in ALL_KINDS]
    assert all(w["data"] is None for w in created["widgets"])  # mutations do not resolve data
    assert ok(publish(client, editor, "coffee", "first"))["publishDashboard"] == {"state": "PUBLISHED", "version": 1}

    shown = ok(fetch(client, "coffee", keys.read))["dashboard"]
    data = {w["id"]: w["data"] for w in shown["widgets"]}
    assert shown["watermark"] is not None
    assert all(d is None for d in (data["intro"], data["logo"], data["shop"]))
    assert data["revenue"]["kpi"]["value"] == pytest.approx(10.0)
    assert data["revenue"]["kpis"] == [{"metric": "revenue", "value": 10.0}, {"metric": "sale", "value": 3.0}]
    line = data["revenue-line"]["series"]
    assert sum(p["value"] for p in line["points"]) == pytest.approx(10.0) and len(line["previous"]) == 6
    assert data["by-category"]["breakdown"] == [{"key": "coffee", "value": 7.5}, {"key": "pastry", "value": 2.5}]
    assert data["category-table"]["breakdown"] == data["by-category"]["breakdown"]
    assert data["stock-table"]["gauges"] == [{"key": "beans", "value": 12.0}, {"key": "milk", "value": 3.0}]
    assert data["stock"]["gauges"] == [{"key": "beans", "value": 12.0}]
    assert [e["id"] for e in data["feed"]["events"]] == ["s3", "s2"]
    assert data["prices"]["table"] == {
        "columns": [{"name": "product", "type": "TEXT"}, {"name": "price", "type": "NUMBER"}],
        "rows": [["latte", 4.2], ["muffin", 3.1]],
    }
    assert all(d is None or d["error"] is None for d in data.values())

    # The CSV export of a widget is its data, row for row.
    def exported(widget: str) -> list[list[str]]:
        response = client.get(f"/v1/dashboards/coffee/widgets/{widget}.csv")  # public: no key
        assert response.status_code == 200, response.data
        return list(csv.reader(io.StringIO(response.get_data(as_text=True))))

    assert exported("by-category") == [["key", "value", "count"], ["coffee", "7.5", "2"], ["pastry", "2.5", "1"]]
    line_csv = exported("revenue-line")
    assert line_csv[0] == ["bucket", "value", "count", "partial", "previous_bucket", "previous_value"]
    assert [float(row[1]) for row in line_csv[1:]] == [p["value"] for p in line["points"]]
    assert [float(row[5]) for row in line_csv[1:]] == [p["value"] for p in line["previous"]]
    assert exported("revenue")[1:] == [["revenue", "10", "", ""], ["sale", "3", "", ""]]
    assert exported("stock")[1][:2] == ["beans", "12"]
    assert [row[0] for row in exported("feed")[1:]] == ["s3", "s2"]


def test_lifecycle_versions_and_history(client: FlaskClient, editor: str, keys: Keys) -> None:
    ok(create(client, editor, "ops", [ALL_KINDS[0]]))
    ok(publish(client, editor, "ops", "v1"))
    edit = (
        'mutation { addWidget(slug: "ops", widget: {id: "more", kind: TEXT, title: "More", markdown: "x"})'
        " { state version } }"
    )
    assert ok(gql(client, edit, editor))["addWidget"] == {"state": "DRAFT", "version": 2}
    assert ok(fetch(client, "ops", keys.read))["dashboard"]["version"] == 1  # viewers still see v1
    assert [w["id"] for w in ok(fetch(client, "ops", keys.read, ", draft: true"))["dashboard"]["widgets"]] == [
        "intro",
        "more",
    ]
    ok(publish(client, editor, "ops", "v2"))
    versions = ok(gql(client, '{ dashboardVersions(slug: "ops") { version state releaseNotes } }', keys.read))
    assert versions["dashboardVersions"] == [
        {"version": 2, "state": "PUBLISHED", "releaseNotes": "v2"},
        {"version": 1, "state": "INACTIVE", "releaseNotes": "v1"},
    ]
    archived = ok(gql(client, 'mutation { archiveDashboard(slug: "ops") { state } }', editor))
    assert archived["archiveDashboard"]["state"] == "ARCHIVED"
    copied = ok(gql(client, 'mutation { copyDashboard(slug: "ops", newSlug: "ops-2") { slug state name } }', editor))
    assert copied["copyDashboard"] == {"slug": "ops-2", "state": "DRAFT", "name": "Ops (copy)"}
    history = ok(gql(client, '{ dashboardHistory(slug: "ops") { type by } }', keys.read))["dashboardHistory"]
    assert [h["type"] for h in history][-1] == "dashboard_archived" and {h["by"] for h in history} == {"designer"}


def test_anonymous_callers_see_public_published_dashboards_and_nothing_else(
    client: FlaskClient, editor: str, keys: Keys
) -> None:
    ok(create(client, editor, "public-live", [ALL_KINDS[0]], visibility="PUBLIC", description="open to all"))
    ok(publish(client, editor, "public-live"))
    ok(create(client, editor, "secret-plans", [ALL_KINDS[0]], visibility="PRIVATE", description="open to all"))
    ok(publish(client, editor, "secret-plans"))
    ok(create(client, editor, "public-draft", [ALL_KINDS[0]], visibility="PUBLIC"))
    # A draft opened on the public dashboard is not public either.
    ok(gql(client, 'mutation { updateDashboard(slug: "public-live", input: {name: "Renamed"}) { state } }', editor))

    assert ok(fetch(client, "public-live"))["dashboard"]["name"] == "Public-Live"
    # Nothing beyond the published version itself: not who edits it, not that a draft is open.
    who = '{ dashboard(slug: "public-live") { hasDraft updatedBy publishedBy copiedFrom streamVersion } }'
    assert ok(gql(client, who))["dashboard"] == {
        "hasDraft": False,
        "updatedBy": None,
        "publishedBy": None,
        "copiedFrom": None,
        "streamVersion": 0,
    }
    assert ok(gql(client, who, keys.read))["dashboard"]["hasDraft"] is True
    listed = ok(gql(client, '{ dashboards(search: "open") { slug } }'))["dashboards"]
    assert listed == [{"slug": "public-live"}]
    assert [d["slug"] for d in ok(gql(client, "{ dashboards { slug } }", keys.read))["dashboards"]] == [
        "public-draft",
        "public-live",
        "secret-plans",
    ]
    nobody = fetch(client, "no-such-thing")
    for slug, extra in (("secret-plans", ""), ("public-draft", ""), ("public-live", ", draft: true")):
        hidden = fetch(client, slug, extra=extra)
        assert hidden["data"] is None and code(hidden) == "NOT_FOUND"
        assert hidden["errors"][0]["message"].replace(slug, "?") == nobody["errors"][0]["message"].replace(
            "no-such-thing", "?"
        )
    assert code(gql(client, '{ dashboardVersions(slug: "secret-plans") { version } }')) == "NOT_FOUND"
    assert code(gql(client, '{ dashboardHistory(slug: "public-live") { type } }')) == "UNAUTHENTICATED"
    assert code(publish(client, "", "public-draft")) == "UNAUTHENTICATED"
    assert code(fetch(client, "public-live", "pulse_0123456789abcdef_wrong")) == "UNAUTHENTICATED"
    # A key without read (ingest only) sees what anonymous callers see.
    assert code(fetch(client, "secret-plans", keys.ingest)) == "NOT_FOUND"
    assert ok(fetch(client, "secret-plans", keys.read))["dashboard"]["slug"] == "secret-plans"


def test_editing_needs_the_editor_scope(client: FlaskClient, keys: Keys, editor: str) -> None:
    assert code(create(client, keys.read, "nope")) == "FORBIDDEN"
    assert ok(create(client, keys.admin, "by-admin"))["createDashboard"]["slug"] == "by-admin"


def test_a_stale_expected_version_is_a_conflict_not_a_lost_edit(client: FlaskClient, editor: str, keys: Keys) -> None:
    read = ok(create(client, editor, "race"))["createDashboard"]["streamVersion"]
    rename = (
        "mutation($v: Int, $name: String)"
        ' { updateDashboard(slug: "race", input: {name: $name}, expectedVersion: $v) { name } }'
    )
    assert ok(gql(client, rename, editor, v=read, name="First"))["updateDashboard"]["name"] == "First"
    assert code(gql(client, rename, editor, v=read, name="Second")) == "CONFLICT"
    assert ok(fetch(client, "race", keys.read))["dashboard"]["name"] == "First"


def test_bad_input_names_the_field(client: FlaskClient, editor: str) -> None:
    bad = create(client, editor, "Not A Slug!")
    assert code(bad) == "BAD_USER_INPUT" and bad["errors"][0]["extensions"]["errors"][0]["field"] == "slug"
    widget = {"id": "k", "kind": "KPI", "title": "Revenue", "source": {"kind": "GAUGE", "gauge": "stock"}}
    bad_widget = create(client, editor, "ok-slug", [widget])
    fields = [e["field"] for e in bad_widget["errors"][0]["extensions"]["errors"]]
    assert code(bad_widget) == "BAD_USER_INPUT" and fields == ["widgets[0].source.kind"]


def test_a_widget_over_an_unknown_metric_carries_its_error_and_the_others_resolve(
    client: FlaskClient, editor: str, keys: Keys
) -> None:
    widgets = [
        ALL_KINDS[0],
        {"id": "k", "kind": "KPI", "title": "Gone", "source": {"kind": "SERIES", "metric": "gone"}},
    ]
    ok(create(client, editor, "broken", widgets))
    shown = ok(fetch(client, "broken", keys.read))["dashboard"]["widgets"]
    assert shown[1]["data"]["error"]["code"] == "BAD_WIDGET_SOURCE" and "gone" in shown[1]["data"]["error"]["message"]
