"""Accessibility, checked in the browser: axe-core (vendored for the tests only, MPL-2.0) finds no
WCAG 2.1 A/AA violation on any page (labels, names, contrast, roles), and the keyboard reaches
the controls with a visible focus ring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_webapp import sign_in
from tests.e2e.test_live_subscriptions import Server
from workers.demo_dashboard import SLUG

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
WCAG = "{runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}"


@pytest.fixture
def audited(browser: Browser) -> Iterator[Page]:
    # axe is injected as a script tag: this context alone ignores the app's CSP to allow it.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def violations(page: Page) -> list[tuple[str, str, list[str]]]:
    page.wait_for_selector("body[data-ready=true]")
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(f"axe.run(document, {WCAG})")["violations"]
    return [(v["id"], v["impact"], [str(n["target"]) for n in v["nodes"]]) for v in found]


@pytest.mark.parametrize("path", ["/", f"/d/{SLUG}", "/d/no-such-dashboard"])
def test_public_pages_have_no_wcag_violations(demo_server: Server, audited: Page, path: str) -> None:
    audited.goto(f"{demo_server.url}{path}")
    assert violations(audited) == []


def test_signed_in_pages_have_no_wcag_violations(demo_server: Server, audited: Page) -> None:
    sign_in(audited, demo_server, demo_server.admin)
    for path in ("/", f"/d/{SLUG}", "/new", f"/edit/{SLUG}", "/ops"):
        audited.goto(f"{demo_server.url}{path}")
        assert violations(audited) == [], path


def test_the_keyboard_reaches_the_controls_with_a_visible_focus(demo_server: Server, page: Page) -> None:
    page.goto(f"{demo_server.url}/d/{SLUG}")
    expect(page.locator(".stream-state")).to_have_text("Live")
    reached = []
    for _ in range(30):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "(() => { const e = document.activeElement; if (e === document.body) return ['', 'body', ''];"
            " const s = getComputedStyle(e);"
            " return [e.id || e.getAttribute('aria-label') || e.textContent.trim().slice(0, 30),"
            " s.outlineStyle, s.outlineWidth]; })()"
        )
        if focused[1] == "body":
            continue  # past the last control, before the browser wraps around to the first
        reached.append(focused[0])
        assert focused[1] != "none" and focused[2] != "0px", f"no visible focus on {focused[0]}"
    assert "Skip to content" in reached
    assert "api-key" in reached and "range" in reached
    assert "Download Revenue today as CSV" in reached
    assert "Latest sales" in reached  # the scrolling feed
