"""Every widget kind drawn from a dashboard defined over GraphQL, Markdown kept harmless, the
phone layout, and the visible state when the live stream drops."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import SCREENSHOTS
from tests.e2e.harness import PULSE, ROOT, wait_until
from tests.e2e.test_live_subscriptions import HEARTBEAT, Server

SERIES = {"kind": "SERIES", "metric": "revenue", "resolution": "HOUR", "last": 6, "compareTo": "PREVIOUS_PERIOD"}
BREAKDOWN = {"kind": "BREAKDOWN", "metric": "revenue", "dimension": "category", "resolution": "DAY"}
PIXEL = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
WIDGETS = [
    {
        "id": "intro",
        "kind": "TEXT",
        "title": "About",
        "markdown": "# Hello\n\n**Bold** and <script>window.__pwned = 1</script>"
        " [ok](https://example.org) [bad](javascript:alert(1))\n\n- one\n- two",
    },
    {"id": "logo", "kind": "IMAGE", "title": "Logo", "imageUrl": PIXEL, "alt": "The shop's logo"},
    {"id": "group", "kind": "SECTION", "title": "Charts", "tabs": ["Time", "Split"]},
    *[
        {
            "id": f"chart-{kind.lower().replace('_', '-')}",
            "kind": "CHART",
            "chart": kind,
            "title": f"{kind} chart",
            "source": SERIES,
            "layout": {"w": 6, "section": "group", "tab": "Time"},
        }
        for kind in ("LINE", "COLUMN", "STACKED_COLUMN")
    ],
    *[
        {
            "id": f"chart-{kind.lower().replace('_', '-')}",
            "kind": "CHART",
            "chart": kind,
            "title": f"{kind} chart",
            "source": BREAKDOWN,
            "layout": {"w": 4, "section": "group", "tab": "Split"},
        }
        for kind in ("BAR", "PIE", "DONUT")
    ],
    {
        "id": "kpi",
        "kind": "KPI",
        "title": "Revenue",
        "format": "CURRENCY",
        "source": {**SERIES, "resolution": "DAY", "last": 1, "metrics": ["orders"]},
    },
    {"id": "prices", "kind": "TABLE", "title": "Prices", "source": {"kind": "DATASET", "dataset": "prices"}},
    {
        "id": "price-chart",
        "kind": "CHART",
        "chart": "COLUMN",
        "title": "Prices chart",
        "source": {"kind": "DATASET", "dataset": "prices", "fields": ["product", "price"]},
    },
    {
        "id": "split",
        "kind": "TABLE",
        "title": "By category",
        "source": BREAKDOWN,
        "columns": [
            {"field": "key", "label": "Category", "format": "TEXT"},
            {"field": "value", "label": "Revenue", "format": "CURRENCY"},
            {"field": "count", "label": "Sales"},
        ],
    },
    {"id": "levels", "kind": "GAUGE", "title": "Stock", "source": {"kind": "GAUGE", "gauge": "stock"}},
    {"id": "feed", "kind": "RECENT_EVENTS", "title": "Latest", "source": {"kind": "RECENT_EVENTS", "limit": 5}},
]


def graphql(server: Server, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = requests.post(
        f"{server.url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {server.admin}"},
        timeout=10,
    )
    answer = response.json()
    assert "errors" not in answer, answer
    return answer


def publish(server: Server, spec: dict[str, Any]) -> None:
    graphql(server, "mutation($input: DashboardInput!) { createDashboard(input: $input) { slug } }", {"input": spec})
    graphql(server, "mutation($slug: String!) { publishDashboard(slug: $slug) { state } }", {"slug": spec["slug"]})


def test_every_widget_kind_is_drawn(demo_server: Server, page: Page) -> None:
    response = requests.post(
        f"{demo_server.url}/v1/datasets",
        json={"name": "prices", "data": "product,price,launched\nlatte,4.2,2024-03-01\nmug,12,2025-01-15\n"},
        headers={"Authorization": f"Bearer {demo_server.admin}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    publish(demo_server, {"slug": "every-kind", "name": "Every kind", "visibility": "PUBLIC", "widgets": WIDGETS})
    page.goto(f"{demo_server.url}/d/every-kind")
    expect(page.get_by_role("heading", name="Every kind", level=1)).to_be_visible()

    text = page.locator("[data-widget=intro] .markdown")
    expect(text.locator("strong")).to_have_text("Bold")
    expect(text.locator("li")).to_have_count(2)
    assert "<script>" in text.inner_text()  # shown as text, never run
    assert page.evaluate("window.__pwned") is None
    assert text.locator("a").count() == 1 and text.locator("a").get_attribute("href") == "https://example.org"
    expect(page.get_by_role("img", name="The shop's logo")).to_be_visible()

    for kind in ("line", "column", "stacked-column"):
        expect(page.locator(f"[data-widget=chart-{kind}] canvas")).to_be_visible()
    page.get_by_role("tab", name="Split").click()
    for kind in ("bar", "pie", "donut"):
        expect(page.locator(f"[data-widget=chart-{kind}] canvas")).to_be_visible()
        assert "coffee" in page.locator(f"[data-widget=chart-{kind}] canvas").get_attribute("aria-label")
    expect(page.locator("[data-widget=chart-line] canvas")).to_be_hidden()

    expect(page.locator("[data-widget=kpi] .kpi-value")).to_contain_text("$")
    expect(page.locator("[data-widget=kpi] .kpi-more li[data-metric=orders]")).to_contain_text("orders:")
    expect(page.locator("[data-widget=prices] th")).to_have_text(["product", "price", "launched"])
    expect(page.locator("[data-widget=prices] tbody tr").first).to_contain_text("latte")
    expect(page.locator("[data-widget=price-chart] canvas")).to_be_visible()
    assert "mug: 12" in page.locator("[data-widget=price-chart] canvas").get_attribute("aria-label")
    expect(page.locator("[data-widget=split] th").first).to_have_text("Category")
    expect(page.locator("[data-widget=split] tbody tr").first).to_contain_text("$")
    expect(page.locator("[data-widget=levels] meter")).not_to_have_count(0)
    expect(page.locator("[data-widget=feed] li")).to_have_count(5)


def test_a_phone_gets_one_column(demo_server: Server, page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{demo_server.url}/d/coffee-shops-live")
    tiles = page.locator("[data-kind=KPI]")
    expect(tiles).to_have_count(3)
    boxes = [tiles.nth(i).bounding_box() for i in range(3)]
    assert len({round(box["x"]) for box in boxes}) == 1  # stacked, not side by side
    assert all(box["width"] > 300 for box in boxes)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard-phone.png"))


def restart(server: Server) -> None:
    """`pulse serve` again, on the same port and store, as after a deploy or a crash."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PULSE_HEARTBEAT_SECONDS": str(HEARTBEAT)}
    with (server.directory / "serve-again.log").open("w") as log:
        server.process = subprocess.Popen(
            [*PULSE, "serve", "--port", str(server.port), "--db", str(server.db), "--workers", "1"],
            cwd=server.directory,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_until(server._healthy, "pulse serve to start again")


def test_a_dropped_stream_shows_reconnecting_then_live_again(tmp_path: Path, page: Page) -> None:
    server = Server(tmp_path / "dropping")
    try:
        text = {"id": "t", "kind": "TEXT", "title": "Note", "markdown": "Hi"}
        publish(server, {"slug": "note", "name": "Note", "visibility": "PUBLIC", "widgets": [text]})
        page.goto(f"{server.url}/d/note")
        expect(page.locator(".stream-state")).to_have_text("Live")
        page.evaluate("window.__notReloaded = true")
        server.stop()
        expect(page.locator(".stream-state")).to_have_text("Reconnecting…")
        restart(server)
        graphql(
            server,
            'mutation { updateWidget(slug: "note", widget: {id: "t", kind: TEXT, title: "Note",'
            ' markdown: "Back"}) { streamVersion } }',
        )
        graphql(server, 'mutation { publishDashboard(slug: "note") { state } }')
        # Subscribed again by itself (backing off up to 5 s), and the new version is pushed.
        expect(page.locator(".stream-state")).to_have_text("Live", timeout=20_000)
        expect(page.locator("[data-widget=t] .markdown")).to_have_text("Back", timeout=20_000)
        assert page.evaluate("window.__notReloaded") is True
    finally:
        server.stop()
