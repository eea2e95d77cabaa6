"""Alerts end to end on a real `pulse serve`: a rule on the demo's stock gauge fires after
the event that crosses it, a local webhook receives the signed notification, and the
`alertUpdated` stream shows the transition."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests

from tests.e2e.harness import PULSE, wait_until
from tests.e2e.test_live_subscriptions import SSE
from tests.e2e.test_serve_live import ENV, Server
from tests.support import real_now

pytestmark = pytest.mark.serves

SECRET = "demo-webhook-secret-42"


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    handler = type("Receiver", (Hook,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pulse", handler.received
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path, "--no-auth")
    yield running
    running.stop()


def gql(url: str, query: str, **variables: Any) -> dict:
    body = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=10).json()
    assert "errors" not in body, body
    return body["data"]


def stock(url: str, product: str, level: int) -> None:
    event = {
        "type": "stock_level",
        "occurredAt": real_now().isoformat(),
        "properties": {"product": product, "level": level},
    }
    assert requests.post(f"{url}/v1/events", json={"events": [event]}, timeout=10).status_code == 202


def test_a_low_stock_rule_fires_notifies_a_webhook_and_streams_the_transition(
    server: Server, webhook: tuple[str, list]
) -> None:
    url, received = webhook
    gql(
        server.url,
        'mutation { defineGauge(input: {name: "stock", eventType: "stock_level", valueProperty: "level",'
        ' keyProperty: "product"}) { name } }',
    )
    rule = {
        "name": "low-stock",
        "gauge": "stock",
        "condition": "BELOW",
        "threshold": 10,
        "perDimension": "product",
        "targets": [{"kind": "WEBHOOK", "url": url, "secret": SECRET}],
    }
    gql(server.url, "mutation($input: AlertRuleInput!) { defineAlertRule(input: $input) { name } }", input=rule)
    stock(server.url, "mug", 40)
    wait_until(
        lambda: gql(server.url, '{ gauges(name: "stock") { value } }')["gauges"] == [{"value": 40.0}],
        "the first reading to be projected",
    )

    payloads: list[dict] = []
    response = requests.post(
        f"{server.url}/graphql",
        json={
            "query": 'subscription { alertUpdated(rule: "low-stock") {'
            " rules { name firing } transitions { instance fromState toState value } } }"
        },
        headers={"Accept": SSE},
        stream=True,
        timeout=30,
    )
    assert response.status_code == 200

    def read() -> None:
        event = None
        with contextlib.suppress(Exception):  # the test closes the connection under the reader
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: ") and event == "next":
                    payloads.append(json.loads(line[len("data: ") :]))

    threading.Thread(target=read, daemon=True).start()
    first = wait_until(lambda: payloads[0] if payloads else None, "alertUpdated's first payload", timeout=15)
    assert first["data"]["alertUpdated"] == {"rules": [{"name": "low-stock", "firing": 0}], "transitions": []}

    stock(server.url, "mug", 3)  # crosses the threshold
    headers, body = wait_until(lambda: received[0] if received else None, "the webhook to be called", timeout=15)
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Pulse-Signature"], expected)
    notification = json.loads(body)
    assert (notification["kind"], notification["instance"], notification["value"]) == ("firing", "mug", 3.0)

    streamed = wait_until(lambda: payloads[1] if len(payloads) > 1 else None, "alertUpdated to push", timeout=15)
    assert streamed["data"]["alertUpdated"] == {
        "rules": [{"name": "low-stock", "firing": 1}],
        "transitions": [{"instance": "mug", "fromState": "NORMAL", "toState": "FIRING", "value": 3.0}],
    }
    deliveries = gql(server.url, '{ notificationDeliveries(rule: "low-stock") { status statusCodes } }')
    assert deliveries["notificationDeliveries"] == [{"status": "delivered", "statusCodes": [204]}]
    assert len(received) == 1
    response.close()


def test_the_demo_defines_its_alert_rules(server: Server) -> None:
    options = ["--rate", "40", "--duration", "1", "--history-hours", "0.2", "--seed", "5", "--db", str(server.db)]
    demo = subprocess.run(
        [*PULSE, "demo", "--url", server.url, *options],
        cwd=server.db.parent,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr + demo.stdout
    assert "defined low-stock" in demo.stdout and "defined sales-spike" in demo.stdout
    rules = gql(server.url, "{ alertRules { name perDimension gauge metric } }")["alertRules"]
    assert rules == [
        {"name": "low-stock", "perDimension": "product", "gauge": "stock", "metric": None},
        {"name": "sales-spike", "perDimension": None, "gauge": None, "metric": "orders"},
    ]
