"""Alerts in the web app, in a real Chromium against `pulse serve` with `pulse demo`'s data: the
demo dashboard's ALERTS widget lists a product whose stock runs low (live, without a reload,
to a visitor without a key), and /ops shows the demo's rules with their instances' states."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.test_webapp import settled, sign_in
from tests.e2e.test_live_subscriptions import Server, event
from tests.support import real_now
from workers.demo_dashboard import SLUG

#: A product of this test's own, so the demo's products keep their levels.
PRODUCT = "browser-test-beans"


def test_the_demo_dashboard_shows_its_alerts_and_ops_shows_the_rules_states(demo_server: Server, page: Page) -> None:
    settled(demo_server)
    page.goto(f"{demo_server.url}/d/{SLUG}")
    widget = page.locator("[data-widget=stock-alerts]")
    expect(widget.get_by_role("heading", name="Low stock alerts")).to_be_visible()
    expect(widget.get_by_role("list", name="Low stock alerts")).to_be_visible()
    page.evaluate("window.__notReloaded = true")

    # Stock of a product runs low: the low-stock rule fires for it, and the open page shows it.
    demo_server.post(event("stock_level", 808_080, real_now(), product=PRODUCT, level=1))
    firing = widget.locator(f"li[data-rule=low-stock][data-instance={PRODUCT}]")
    expect(firing).to_be_visible(timeout=15_000)
    expect(firing).to_contain_text("WARNING")  # the severity is written, not only a colour
    expect(firing).to_have_attribute("data-state", "FIRING")
    assert page.evaluate("window.__notReloaded") is True
    # Only the rule the widget names: the demo's other rule never shows here.
    expect(widget.locator("li[data-rule=sales-spike]")).to_have_count(0)

    # /ops: every rule of the demo, with its instances' states.
    _, reader = demo_server.key("alerts-operator", "read")
    sign_in(page, demo_server, reader)
    page.get_by_role("link", name="Operations").click()
    expect(page.get_by_role("heading", name="Alert rules")).to_be_visible()
    expect(page.locator("tr[data-rule=sales-spike]")).to_be_visible()
    rule = page.locator("tr[data-rule=low-stock]")
    expect(rule).to_be_visible()
    expect(rule.locator(f"li[data-instance={PRODUCT}][data-state=FIRING]")).to_be_visible()
    expect(page.get_by_role("columnheader", name="Instances")).to_be_visible()


def test_an_editor_adds_an_alerts_widget(demo_server: Server, page: Page) -> None:
    _, secret = demo_server.key("alerts-designer", "editor")
    sign_in(page, demo_server, secret)
    page.get_by_role("link", name="New dashboard").click()
    page.get_by_label("Name", exact=True).fill("Alert board")
    page.get_by_role("button", name="Create draft").click()
    expect(page).to_have_url(f"{demo_server.url}/edit/alert-board")

    form = page.get_by_role("form", name="Add a widget")
    form.get_by_label("Title", exact=True).fill("Stock alerts")
    form.get_by_label("Kind", exact=True).select_option("ALERTS")
    expect(form.get_by_label("Metric", exact=True)).to_be_hidden()
    form.get_by_label("Severities", exact=True).select_option(label="Critical and warning")
    form.get_by_label("Alert rules", exact=True).fill("low-stock")
    form.get_by_role("button", name="Add widget").click()
    expect(page.locator(".widget-list li")).to_have_count(1)
    expect(page.locator(".preview [data-kind=ALERTS]").get_by_role("list", name="Stock alerts")).to_be_visible()

    query = '{ dashboard(slug: "alert-board", draft: true) { widgets { kind source { kind severities rules } } } }'
    saved = demo_server.graphql(query, secret)["data"]["dashboard"]["widgets"]
    assert saved == [
        {"kind": "ALERTS", "source": {"kind": "ALERTS", "severities": ["CRITICAL", "WARNING"], "rules": ["low-stock"]}}
    ]
