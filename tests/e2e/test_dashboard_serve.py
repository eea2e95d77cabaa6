"""The demo's public dashboard on a real `pulse serve`: fetched without a key, and its
``dashboardUpdated`` stream (no key either) pushes the new revenue within a second of a
posted sale."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.e2e.harness import PULSE, ROOT, wait_until
from tests.e2e.test_live_subscriptions import PUSH_DEADLINE, SLOW, Server, Stream, event
from tests.support import real_now
from workers.demo_dashboard import SLUG

pytestmark = pytest.mark.serves

DEMO_OPTIONS = ["--rate", "20", "--duration", "1", "--history-hours", "0.5", "--seed", "7"]
REVENUE = "widgets { id data { kpi { value } series { points { value } } } }"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("dashboards") / "demo")
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
    assert f"published dashboard {SLUG}" in demo.stdout
    yield server
    server.stop()


def anonymous(server: Server, query: str) -> dict[str, Any]:
    response = requests.post(f"{server.url}/graphql", json={"query": query}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def revenue_today(dashboard: dict[str, Any]) -> float:
    widgets = {w["id"]: w["data"] for w in dashboard["widgets"]}
    return widgets["revenue-today"]["kpi"]["value"] or 0.0


def test_the_demo_dashboard_is_public_and_live_without_a_key(server: Server) -> None:
    listed = anonymous(server, "{ dashboards { slug name state } }")
    assert listed == {"data": {"dashboards": [{"slug": SLUG, "name": "Coffee shops live", "state": "PUBLISHED"}]}}

    def counted() -> dict[str, Any] | None:
        body = anonymous(server, f'{{ dashboard(slug: "{SLUG}") {{ watermark {REVENUE} }} }}')
        assert "errors" not in body, body
        return body["data"]["dashboard"] if revenue_today(body["data"]["dashboard"]) > 0 else None

    shown = wait_until(counted, "the demo's sales to be counted", timeout=SLOW)
    kinds = {w["id"]: w["data"] for w in shown["widgets"]}
    assert kinds["revenue-by-hour"]["series"]["points"] and shown["watermark"]

    stream = Stream(server, f'subscription {{ dashboardUpdated(slug: "{SLUG}") {{ {REVENUE} }} }}', key=None)
    try:
        assert stream.status == 200
        first = stream.next()
        assert "errors" not in first, first
        # Let whatever the demo still had in flight be counted and pushed, then post one more sale.
        wait_until(lambda: all(p["lagEvents"] == 0 for p in _projections(server)), "the worker to catch up")
        settled = revenue_today(_fetch(server))
        last = first
        while revenue_today(last["data"]["dashboardUpdated"]) != settled:
            last = stream.next()
        server.post(event("sale", 999_001, real_now(), amount=123.45, category="coffee", store="downtown"))
        pushed = stream.until(
            lambda p: abs(revenue_today(p["data"]["dashboardUpdated"]) - (settled + 123.45)) < 1e-6,
            timeout=PUSH_DEADLINE,
        )
        assert "errors" not in pushed
    finally:
        stream.close()


def _projections(server: Server) -> list[dict[str, Any]]:
    return server.graphql("{ projections { lagEvents } }")["data"]["projections"]


def _fetch(server: Server) -> dict[str, Any]:
    body = anonymous(server, f'{{ dashboard(slug: "{SLUG}") {{ {REVENUE} }} }}')
    assert "errors" not in body, body
    return body["data"]["dashboard"]


def test_a_private_dashboard_is_not_found_without_a_key(server: Server) -> None:
    created = server.graphql('mutation { copyDashboard(slug: "coffee-shops-live", newSlug: "internal") { slug } }')
    assert "errors" not in created, created
    made_private = server.graphql(
        'mutation { updateDashboard(slug: "internal", input: {visibility: PRIVATE}) { visibility } }'
    )
    assert "errors" not in made_private, made_private
    assert "errors" not in server.graphql('mutation { publishDashboard(slug: "internal") { state } }')
    hidden = anonymous(server, '{ dashboard(slug: "internal") { name } }')
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert [d["slug"] for d in anonymous(server, "{ dashboards { slug } }")["data"]["dashboards"]] == [SLUG]


def test_the_quick_start_server_streams_the_demo_into_its_public_dashboard(tmp_path) -> None:
    """`make run` is `pulse serve --demo`: open / and the demo dashboard is there, and moves."""
    quick = Server(tmp_path / "quick", "--demo")
    try:
        query = f'{{ dashboard(slug: "{SLUG}") {{ watermark {REVENUE} }} }}'

        def revenue() -> float | None:
            body = anonymous(quick, query)
            return revenue_today(body["data"]["dashboard"]) if body.get("data") else None

        first = wait_until(revenue, "the demo to publish its dashboard and post sales", timeout=90, poll=0.5)
        wait_until(lambda: (revenue() or 0) > first, "the demo dashboard to move", timeout=60, poll=0.5)
        page = requests.get(f"{quick.url}/", timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    finally:
        quick.stop()
