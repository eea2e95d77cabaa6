"""The requests behind the auth matrix (tests/api/test_auth_matrix.py): the store every caller
meets (seeded through the API as admin), the credentials of each caller, and one minimal valid
request per REST route, web page and GraphQL operation, answered as a short code."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from graphql import GraphQLObjectType, get_named_type, is_composite_type

from api.graphql_schema import schema
from bootstrap import Pulse
from domain.clock import FrozenClock, now_utc
from domain.keys import create_key
from tests.api.conftest import Keys, bearer
from tests.api.test_oidc import Issuer

#: Who calls, as the matrix's columns name them; each column is exercised with every credential listed.
CALLERS: dict[str, tuple[str, ...]] = {
    "anonymous": ("no credentials",),
    "viewer": ("read key", "viewer token"),
    "editor": ("editor key", "editor token"),
    "admin": ("admin key", "admin token"),
    "ingest key": ("ingest key",),
    "revoked key": ("revoked key",),
    "expired token": ("expired token",),
}
CREDENTIALS = tuple(credential for credentials in CALLERS.values() for credential in credentials)

#: /metrics answers local callers without a key (PULSE_METRICS_ACCESS=local): the matrix calls from afar.
REMOTE_ADDR = "203.0.113.9"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
TEXT_WIDGET = {"id": "intro", "kind": "TEXT", "title": "About", "markdown": "Live from the shops"}
KPI_WIDGET = {
    "id": "revenue",
    "kind": "KPI",
    "title": "Revenue",
    "source": {"kind": "SERIES", "metric": "revenue", "resolution": "HOUR", "last": 24},
}
REVENUE_RULE = {"name": "big-day", "metric": "revenue", "condition": "ABOVE", "threshold": 100}
STOCK_RULE = {
    "name": "low-stock",
    "gauge": "stock",
    "condition": "BELOW",
    "threshold": 5,
    "perDimension": "product",
    "targets": [{"kind": "LOG"}],
}


def _answer(body: dict[str, Any]) -> str:
    errors = body.get("errors") or []
    return "ok" if not errors else (errors[0].get("extensions") or {}).get("code", "NO_CODE")


def gql(client: FlaskClient, headers: dict[str, str], query: str, **variables: Any) -> str:
    response = client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    if response.status_code >= 500:
        return str(response.status_code)
    return _answer(response.get_json())


def first_frame(client: FlaskClient, headers: dict[str, str], query: str, **variables: Any) -> str:
    """A subscription over SSE: the answer of its first frame (the current value, or the error)."""
    response = client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={**headers, "Accept": "text/event-stream"},
    )
    try:
        if response.status_code >= 500:
            return str(response.status_code)
        if not response.mimetype.startswith("text/event-stream"):
            body = response.get_json()
            return _answer(body) if body and "errors" in body else str(response.status_code)
        seen = ""
        for chunk in response.response:
            seen += (chunk.decode() if isinstance(chunk, bytes) else chunk).replace("\r\n", "\n")
            if ("event: next" in seen and "\n\n" in seen.split("event: next", 1)[1]) or "event: complete" in seen:
                break
        for block in seen.split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if lines.get("event") == "next":
                return _answer(json.loads(lines["data"]))
        return "complete without a frame"
    finally:
        response.close()


def _selection(root: str, field: str) -> str:
    root_type = {"query": schema._schema.query_type, "mutation": schema._schema.mutation_type}.get(
        root, schema._schema.subscription_type
    )
    assert isinstance(root_type, GraphQLObjectType)
    return " { __typename }" if is_composite_type(get_named_type(root_type.fields[field].type)) else ""


def operation(root: str, field: str, arguments: str = "", variables: str = "") -> str:
    """A document calling one root field, selecting ``__typename`` of an object answer."""
    call = f"{field}({arguments})" if arguments else field
    head = root if root != "query" or variables else ""
    return f"{head}{f'({variables})' if variables else ''} {{ {call}{_selection(root, field)} }}"


def rest(method: str, path: str, **kwargs: Any) -> Callable[[FlaskClient, dict[str, str], dict[str, Any]], str]:
    """A REST call, its path formatted with the seeded ids; 2xx answers ``ok``, others their status."""

    def call(client: FlaskClient, headers: dict[str, str], seeded: dict[str, Any]) -> str:
        extra = kwargs.get("headers", {})
        sent = {name: value for name, value in kwargs.items() if name != "headers"}
        response = client.open(path.format(**seeded), method=method, headers={**headers, **extra}, **sent)
        response.close()
        return "ok" if 200 <= response.status_code < 300 else str(response.status_code)

    return call


def graphql(root: str, field: str, arguments: str = "", variables: str = "", **values: Any) -> Callable[..., str]:
    """A GraphQL operation; values may be callables of the seeded facts (e.g. a time from the clock)."""
    document = operation(root, field, arguments, variables)
    send = first_frame if root == "subscription" else gql

    def call(client: FlaskClient, headers: dict[str, str], seeded: dict[str, Any]) -> str:
        resolved = {name: value(seeded) if callable(value) else value for name, value in values.items()}
        return send(client, headers, document, **resolved)

    return call


def stream_token(client: FlaskClient, headers: dict[str, str], seeded: dict[str, Any]) -> str:
    """``createStreamToken``, and ``ok`` only if the token it gives opens a stream (EventSource's way)."""
    body = client.post("/graphql", json={"query": "mutation { createStreamToken { token } }"}, headers=headers)
    answer = _answer(body.get_json())
    if answer != "ok":
        return answer
    token = body.get_json()["data"]["createStreamToken"]["token"]
    stream = client.get(
        "/graphql",
        query_string={"query": "subscription { projectionStatus { name } }", "token": token},
        headers={"Accept": "text/event-stream"},
    )
    try:
        first = next(iter(stream.response))
    finally:
        stream.close()
    frame = (first.decode() if isinstance(first, bytes) else first).replace("\r\n", "\n")
    data = next(line.split(": ", 1)[1] for line in frame.splitlines() if line.startswith("data: "))
    return "ok" if _answer(json.loads(data)) == "ok" else "token refused: " + _answer(json.loads(data))


def dashboards_listed(client: FlaskClient, headers: dict[str, str], seeded: dict[str, Any]) -> str:
    """``dashboards``: ``public only`` or ``all`` of the published public and private ones (or the error)."""
    body = client.post("/graphql", json={"query": "{ dashboards { slug } }"}, headers=headers).get_json()
    if _answer(body) != "ok":
        return _answer(body)
    listed = {d["slug"] for d in body["data"]["dashboards"]} & {"public", "private"}
    return {frozenset({"public"}): "public only", frozenset({"public", "private"}): "all"}.get(
        frozenset(listed), f"only {sorted(listed)}"
    )


def seed(client: FlaskClient, keys: Keys, clock: FrozenClock) -> dict[str, Any]:
    """What every operation needs to succeed: metrics, gauges, events, dashboards (public, private,
    a draft to edit, one to archive), alert rules, datasets and an image; the ids they got."""
    admin = bearer(keys.admin)
    now = now_utc(clock)

    def must(query: str, **variables: Any) -> None:
        body = client.post("/graphql", json={"query": query, "variables": variables}, headers=admin).get_json()
        assert not body.get("errors"), f"seeding failed: {query}: {body['errors']}"

    for name, dimensions in (("revenue", '["product"]'), ("doomed", "[]")):
        must(
            f'mutation {{ defineMetric(input: {{name: "{name}", eventType: "sale", aggregation: SUM,'
            f' valueProperty: "amount", dimensions: {dimensions}}}) {{ name }} }}'
        )
    for name in ("stock", "doomed-gauge"):
        must(
            f'mutation {{ defineGauge(input: {{name: "{name}", eventType: "stock_level", valueProperty: "level",'
            ' keyProperty: "product"}) { name } }'
        )
    at = (now - timedelta(minutes=5)).isoformat()
    events = [
        {"id": "sale-1", "type": "sale", "occurredAt": at, "properties": {"amount": 5, "product": "mug"}},
        {"id": "stock-1", "type": "stock_level", "occurredAt": at, "properties": {"level": 2, "product": "mug"}},
    ]
    assert client.post("/v1/events", json={"events": events}, headers=bearer(keys.ingest)).status_code == 202
    create = "mutation($input: DashboardInput!) { createDashboard(input: $input) { slug } }"
    for slug, visibility, publish in (
        ("public", "PUBLIC", True),
        ("private", "PRIVATE", True),
        ("doomed-dash", "PRIVATE", True),
        ("scratch", "PRIVATE", False),
    ):
        widgets = (
            [TEXT_WIDGET, KPI_WIDGET] if slug != "scratch" else [{**TEXT_WIDGET, "id": "a"}, {**TEXT_WIDGET, "id": "b"}]
        )
        must(create, input={"slug": slug, "name": slug.title(), "visibility": visibility, "widgets": widgets})
        if publish:
            must(f'mutation {{ publishDashboard(slug: "{slug}") {{ version }} }}')
    for name in ("low-stock", "doomed-rule"):
        must(
            "mutation($input: AlertRuleInput!) { defineAlertRule(input: $input) { name } }",
            input={**STOCK_RULE, "name": name},
        )
    for name in ("seats", "doomed-ds"):
        created = client.post("/v1/datasets", json={"name": name, "data": [{"code": "a", "seats": 3}]}, headers=admin)
        assert created.status_code == 201, created.get_json()
    image = client.post("/v1/images", data=PNG, headers={**admin, "Content-Type": "image/png"})
    assert image.status_code == 201, image.get_json()
    return {"image": image.get_json()["id"], "since": (now - timedelta(days=1)).isoformat()}


def existing_targets(app: Flask) -> set[str]:
    """Every route (method and rule) of the app and every root field of the schema."""
    routes = {
        f"{method} {rule.rule}"
        for rule in app.url_map.iter_rules()
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    }
    graphql_schema = schema._schema
    roots = (graphql_schema.query_type, graphql_schema.mutation_type, graphql_schema.subscription_type)
    return routes | {f"{root.name}.{field}" for root in roots if root is not None for field in root.fields}


def credentials(pulse: Pulse, keys: Keys, issuer: Issuer, clock: FrozenClock) -> dict[str, dict[str, str]]:
    now = clock.now()

    def token(group: str, **claims: object) -> dict[str, str]:
        return bearer(issuer.token(now, **{"cognito:groups": [group]}, **claims))

    editor_key = create_key(pulse.store, "designer", ["editor"])[1]
    return {
        "no credentials": {},
        "read key": bearer(keys.read),
        "viewer token": token("viewer"),
        "editor key": bearer(editor_key),
        "editor token": token("editor"),
        "admin key": bearer(keys.admin),
        "admin token": token("admin"),
        "ingest key": bearer(keys.ingest),
        "revoked key": bearer(keys.revoked),
        "expired token": token("admin", iat=int(now) - 7200, exp=int(now) - 3600),
    }


def expected_of(cell: str, credential: str) -> str:
    """A cell's answer for one credential: ``key ok / token FORBIDDEN`` tells API keys and sign-in tokens apart."""
    if " / " not in cell:
        return cell
    by_kind = dict(part.split(" ", 1) for part in cell.split(" / "))
    return by_kind["token" if credential.endswith("token") else "key"]
