"""The web app in a real Chromium against a real `pulse serve` with `pulse demo`'s data: what a
visitor sees without signing in, live updates without a reload, an editor publishing a
dashboard through the forms, and a private dashboard kept from anonymous visitors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import SCREENSHOTS
from tests.e2e.harness import wait_until
from tests.e2e.test_live_subscriptions import Server, event
from tests.support import real_now
from workers.demo_dashboard import SLUG

KPIS = ("revenue-today", "orders-today", "basket-today")


def anonymous(server: Server, query: str) -> dict[str, Any]:
    response = requests.post(f"{server.url}/graphql", json={"query": query}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def graphql_kpis(server: Server) -> dict[str, float | None]:
    body = anonymous(server, f'{{ dashboard(slug: "{SLUG}") {{ widgets {{ id data {{ kpi {{ value }} }} }} }} }}')
    assert "errors" not in body, body
    return {w["id"]: w["data"]["kpi"]["value"] for w in body["data"]["dashboard"]["widgets"] if w["id"] in KPIS}


def page_kpis(page: Page) -> dict[str, float | None]:
    values = page.eval_on_selector_all(
        "[data-kind=KPI]", "tiles => tiles.map(t => [t.dataset.widget, t.querySelector('.kpi-value').dataset.value])"
    )
    return {widget: float(value) if value else None for widget, value in values}


def settled(server: Server) -> None:
    wait_until(
        lambda: all(
            p["lagEvents"] == 0 for p in server.graphql("{ projections { lagEvents } }")["data"]["projections"]
        ),
        "the projection worker to catch up",
    )


def sign_in(page: Page, server: Server, secret: str) -> None:
    page.goto(f"{server.url}/")
    page.get_by_label("API key", exact=True).fill(secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_the_public_dashboard_draws_its_charts_and_the_kpis_graphql_answers(demo_server: Server, page: Page) -> None:
    settled(demo_server)
    page.goto(f"{demo_server.url}/")
    page.get_by_role("link", name="Coffee shops live").click()
    expect(page).to_have_url(f"{demo_server.url}/d/{SLUG}")
    expect(page.get_by_role("heading", name="Coffee shops live", level=1)).to_be_visible()

    # Both CHART widgets drew on a canvas, each with its values as text for screen readers.
    for widget in ("revenue-by-hour", "revenue-by-category"):
        canvas = page.locator(f"[data-widget={widget}] canvas")
        expect(canvas).to_be_visible()
        assert canvas.bounding_box()["height"] > 100
        assert "coffee" in page.locator("[data-widget=revenue-by-category] canvas").get_attribute("aria-label")
    expect(page.locator("[data-widget=stock] tbody tr")).not_to_have_count(0)
    expect(page.locator("[data-widget=latest-sales] li")).to_have_count(10)
    expect(page.locator(".stream-state")).to_have_text("Live")
    expect(page.locator(".freshness")).to_contain_text("Data up to")

    expected = graphql_kpis(demo_server)
    assert expected["revenue-today"] and expected["orders-today"]
    wait_until(lambda: page_kpis(page) == expected, f"the KPI tiles to show {expected}", timeout=10)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    with page.expect_download() as download:
        page.get_by_role("button", name="Download Revenue by category today as CSV").click()
    assert download.value.suggested_filename == "revenue-by-category.csv"
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0] == "key,value,count" and any(row.startswith("coffee,") for row in rows[1:])


def test_the_time_range_picker_narrows_the_charts(demo_server: Server, page: Page) -> None:
    page.goto(f"{demo_server.url}/d/{SLUG}")
    rows = page.locator("[data-widget=revenue-by-hour] table.visually-hidden tbody tr")
    expect(rows).to_have_count(12)  # as designed: the last 12 hours
    page.get_by_label("Time range", exact=True).select_option(label="Last hour")
    expect(rows).to_have_count(2)  # the hour that ended within the last 60 minutes, and this one
    page.get_by_label("Time range", exact=True).select_option(label="As designed")
    expect(rows).to_have_count(12)


def test_a_posted_sale_moves_the_kpi_without_a_reload(demo_server: Server, page: Page) -> None:
    settled(demo_server)
    page.goto(f"{demo_server.url}/d/{SLUG}")
    expect(page.locator(".stream-state")).to_have_text("Live")
    before = graphql_kpis(demo_server)
    wait_until(lambda: page_kpis(page) == before, "the tiles to show the settled revenue", timeout=10)
    page.evaluate("window.__notReloaded = true")

    demo_server.post(event("sale", 424_242, real_now(), amount=123.45, category="coffee", store="harbor"))
    target = round(before["revenue-today"] + 123.45, 6)
    wait_until(
        lambda: round(page_kpis(page)["revenue-today"] or 0, 6) == target,
        "the revenue tile to include the new sale",
        timeout=10,
    )
    assert page.evaluate("window.__notReloaded") is True
    expect(page.locator("[data-widget=latest-sales] li").first).to_contain_text("123.45")


def test_an_editor_publishes_a_new_dashboard_through_the_editor(demo_server: Server, page: Page) -> None:
    _, secret = demo_server.key("designer", "editor")
    sign_in(page, demo_server, secret)
    page.get_by_role("link", name="New dashboard").click()
    page.get_by_label("Name", exact=True).fill("Harbor shop")
    expect(page.get_by_label("Address (slug)", exact=True)).to_have_value("harbor-shop")
    page.get_by_label("Tags", exact=True).fill("harbor, sales")
    page.get_by_label("Who may see it", exact=True).select_option("PUBLIC")
    page.get_by_role("button", name="Create draft").click()
    expect(page).to_have_url(f"{demo_server.url}/edit/harbor-shop")

    form = page.get_by_role("form", name="Add a widget")
    form.get_by_label("Title", exact=True).fill("Revenue today")
    form.get_by_label("Kind", exact=True).select_option("KPI")
    form.get_by_label("Metric", exact=True).select_option("revenue")
    form.get_by_label("Resolution", exact=True).select_option("DAY")
    form.get_by_label("Range (buckets)", exact=True).fill("1")
    form.get_by_label("Number format", exact=True).select_option("CURRENCY")
    form.get_by_role("button", name="Add widget").click()
    expect(page.locator(".widget-list li")).to_have_count(1)

    form = page.get_by_role("form", name="Add a widget")
    form.get_by_label("Title", exact=True).fill("Revenue by category")
    form.get_by_label("Kind", exact=True).select_option("CHART")
    form.get_by_label("Chart kind", exact=True).select_option("COLUMN")
    form.get_by_label("Data", exact=True).select_option("BREAKDOWN")
    form.get_by_label("Metric", exact=True).select_option("revenue")
    form.get_by_label("Resolution", exact=True).select_option("DAY")
    form.get_by_label("Breakdown by", exact=True).fill("category")
    form.get_by_role("button", name="Add widget").click()
    expect(page.locator(".widget-list li")).to_have_count(2)

    # Reorder: the chart first; the preview follows.
    page.get_by_role("button", name="Move Revenue by category up").click()
    expect(page.locator(".widget-list li").first).to_contain_text("Revenue by category")
    expect(page.locator(".preview canvas")).to_be_visible()

    # Details: saved, and shown in the preview.
    page.get_by_label("Description", exact=True).first.fill("The harbor shop, by the ferry.")
    page.get_by_role("button", name="Save details").click()
    expect(page.locator(".preview .dashboard-meta")).to_contain_text("The harbor shop, by the ferry.")

    # Configure an existing widget, and remove one.
    page.get_by_role("button", name="Edit Revenue today").click()
    form = page.get_by_role("form", name="Edit widget Revenue today")
    form.get_by_label("Title", exact=True).fill("Revenue so far")
    form.get_by_role("button", name="Save widget").click()
    expect(page.locator(".widget-list li").nth(1)).to_contain_text("Revenue so far")
    form = page.get_by_role("form", name="Add a widget")
    form.get_by_label("Title", exact=True).fill("Scratch")
    form.get_by_label("Kind", exact=True).select_option("TEXT")
    form.get_by_label("Text (Markdown)", exact=True).fill("Temporary")
    form.get_by_role("button", name="Add widget").click()
    expect(page.locator(".widget-list li")).to_have_count(3)
    page.get_by_role("button", name="Remove Scratch").click()
    expect(page.locator(".widget-list li")).to_have_count(2)

    page.get_by_label("Release notes", exact=True).fill("First cut of the harbor view")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "editor.png"), full_page=True)
    page.get_by_role("button", name="Publish").click()
    expect(page.locator(".versions tbody tr").first).to_contain_text("First cut of the harbor view")

    published = anonymous(
        demo_server, '{ dashboard(slug: "harbor-shop") { state visibility widgets { id kind title } } }'
    )
    assert published["data"]["dashboard"] == {
        "state": "PUBLISHED",
        "visibility": "PUBLIC",
        "widgets": [
            {"id": "revenue-by-category", "kind": "CHART", "title": "Revenue by category"},
            {"id": "revenue-today", "kind": "KPI", "title": "Revenue so far"},
        ],
    }

    # Archive (after a confirmation): gone for visitors.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Archive dashboard").click()
    expect(page.locator(".versions tbody tr").first).to_contain_text("archived")
    archived = anonymous(demo_server, '{ dashboard(slug: "harbor-shop") { state } }')
    assert archived["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_an_anonymous_visitor_cannot_reach_a_private_dashboard(demo_server: Server, page: Page) -> None:
    for mutation in (
        f'copyDashboard(slug: "{SLUG}", newSlug: "back-office", name: "Back office") {{ slug }}',
        'updateDashboard(slug: "back-office", input: {visibility: PRIVATE}) { visibility }',
        'publishDashboard(slug: "back-office") { state }',
    ):
        answer = demo_server.graphql(f"mutation {{ {mutation} }}")
        assert "errors" not in answer, answer

    page.goto(f"{demo_server.url}/d/back-office")
    expect(page.get_by_role("heading", name="Dashboard not found")).to_be_visible()
    assert page.locator("[data-widget]").count() == 0
    page.goto(f"{demo_server.url}/")
    expect(page.get_by_role("link", name="Coffee shops live")).to_be_visible()
    expect(page.get_by_role("link", name="Back office")).to_have_count(0)
    page.get_by_label("Search", exact=True).fill("coffee shops")
    expect(page.locator(".cards > li")).to_have_count(1)
    page.get_by_label("Search", exact=True).fill("")
    page.get_by_role("button", name="#demo").click()
    expect(page.get_by_role("link", name="Coffee shops live")).to_be_visible()
    expect(page.locator(".cards > li")).to_have_count(1)

    # With a key that may read, the same page shows it.
    _, reader = demo_server.key("viewer", "read")
    sign_in(page, demo_server, reader)
    page.goto(f"{demo_server.url}/d/back-office")
    expect(page.get_by_role("heading", name="Back office", level=1)).to_be_visible()


def test_the_operations_page_shows_the_projections_to_a_reader(demo_server: Server, page: Page) -> None:
    page.goto(f"{demo_server.url}/ops")
    expect(page.get_by_role("heading", name="Sign in first")).to_be_visible()
    _, reader = demo_server.key("operator", "read")
    sign_in(page, demo_server, reader)
    page.get_by_role("link", name="Operations").click()
    expect(page.locator("tr[data-projection=metrics]")).to_be_visible()
    expect(page.get_by_role("columnheader", name="Lag (events)")).to_be_visible()
    expect(page.get_by_role("columnheader", name="Parked", exact=True)).to_be_visible()
    expect(page.get_by_text("No parked events.")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key", exact=True)).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('pulse.key')") is None
