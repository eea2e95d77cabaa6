"""Real-browser tests: Playwright for Python driving the system Chromium (Debian's `chromium`)
against a real `pulse serve` holding `pulse demo`'s data.

A missing browser fails these tests loudly, never skips them: `make browser` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.e2e.harness import PULSE, ROOT
from tests.e2e.test_live_subscriptions import Server

CHROMIUM = os.environ.get("PULSE_CHROMIUM", "/usr/bin/chromium")
# Headless in a container: no sandbox (root), no GPU, and nothing that phones home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_OPTIONS = ["--rate", "20", "--duration", "1", "--history-hours", "0.5", "--seed", "7"]
#: Where the tests save their screenshots: a scratch folder, so a test run leaves the work
#: tree clean; `PULSE_SCREENSHOTS=docs/screenshots make test` refreshes the committed ones.
SCREENSHOTS = Path(os.environ.get("PULSE_SCREENSHOTS") or tempfile.mkdtemp(prefix="pulse-screenshots-"))

pytestmark = pytest.mark.serves


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: the browser tests need it. Run `make browser`"
            " (as root: apt-get install -y chromium), or set PULSE_CHROMIUM to its path.",
            pytrace=False,
        )
    return CHROMIUM


# Per module, not per session: while the sync API is open it holds a running event loop on this
# thread, and the in-process tests after these (Flask test client, async GraphQL view) need it free.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium_path: str) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no key in sessionStorage); fails the test on a script error or a
    CSP violation."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    page.set_default_timeout(15_000)
    yield page
    context.close()
    assert not problems, problems


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`pulse serve` after `pulse demo` published the public dashboard and streamed a second; shared by
    every browser test (each makes dashboards of its own slugs)."""
    server = Server(tmp_path_factory.mktemp("browser") / "demo")
    try:
        demo = subprocess.run(
            [*PULSE, "demo", "--url", server.url, "--key", server.admin, *DEMO_OPTIONS, "--db", str(server.db)],
            cwd=server.directory,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert demo.returncode == 0, demo.stderr + demo.stdout
        yield server
    finally:
        server.stop()
