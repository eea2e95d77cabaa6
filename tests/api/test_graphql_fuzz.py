"""The whole GraphQL surface under generated input: no 5xx, and every error a client gets
has an ``extensions.code`` that is not ``INTERNAL_SERVER_ERROR``.

The schema is read by introspection (over HTTP, as a client would); for every query,
mutation and subscription field, hypothesis builds argument values from the argument
types, edge values included (huge and 32-bit-edge integers, dates at year 1 and 9999,
empty, huge, non-BMP and unpaired-surrogate strings, long lists, nulls where not allowed,
unknown enum values), and sends them as variables or inline literals with an admin key.
A subscription is read up to its first payload (its value or its error) and closed.

The store holds a defined metric, a gauge and projected events, so valid names reach the
read paths. ``PULSE_FUZZ_EXAMPLES`` (default 25 per field, times half its arguments) runs more.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    build_client_schema,
    get_introspection_query,
    get_named_type,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap import bootstrap
from domain.settings import Settings
from tests.api.conftest import Keys, bearer, http_layer_only, sale

EXAMPLES = int(os.environ.get("PULSE_FUZZ_EXAMPLES", "25"))
KNOWN_NAMES = ["revenue", "sale", "stock", "page_view"]
KNOWN_DIMENSIONS = ["store", "category", "product"]

HUGE_INT = int("9" * 5000) if sys.get_int_max_str_digits() == 0 else None
EDGE_INTS = [0, 1, -1, 3, 10, 10_000, 10_001, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**53, 10**30, -(10**30)]
EDGE_DATES = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "0001-01-02T00:00:00-14:00",
    "0001-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2026-02-29T00:00:00Z",
    "2026-03-01T09:00:00+01:00",
    "2026-11-23T12:00:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-14:00",
    "9999-12-30T00:00:00Z",
    "not a date",
    "",
]
EDGE_STRINGS = ["", " ", "x" * 2_000, "\u00e9t\u00e9", "\U0001f600", "\ud800", "a\x00b", "'; DROP TABLE events;--"]


def _strings(name: str, wild: bool) -> st.SearchStrategy[str]:
    base = st.one_of(st.sampled_from(EDGE_STRINGS), st.text(max_size=40)) if wild else st.text(max_size=12)
    if name in ("metric", "name", "eventType", "event_type"):
        return st.one_of(st.sampled_from(KNOWN_NAMES), base) if wild else st.sampled_from(KNOWN_NAMES)
    if name in ("dimension", "property", "valueProperty", "keyProperty", "dimensions"):
        return st.one_of(st.sampled_from([*KNOWN_DIMENSIONS, "amount", "level"]), base)
    return base


def _scalar(scalar: GraphQLScalarType, name: str, wild: bool) -> st.SearchStrategy[Any]:
    if scalar.name == "Int":
        if not wild:
            return st.one_of(st.integers(1, 100), st.sampled_from(EDGE_INTS))
        return st.one_of(st.sampled_from(EDGE_INTS), st.integers(-1000, 20_000), st.integers())
    if scalar.name == "Float":
        return st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0.0, -0.0, 1e308, 10**400]))
    if scalar.name == "Boolean":
        return st.booleans()
    if scalar.name == "DateTime":
        dates = st.sampled_from(EDGE_DATES if wild else [d for d in EDGE_DATES if d.endswith(("Z", "00"))])
        return st.one_of(dates, st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()))
    if scalar.name == "JSON":
        leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _strings(name, wild))
        return st.recursive(
            leaves,
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_strings("", wild), inner, max_size=4),
            max_leaves=8,
        )
    return _strings(name, wild)


def _values(type_: GraphQLInputType, name: str, wild: bool, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of ``type_``: valid ones with edge values, or (``wild``) also wrong ones:
    nulls where not allowed, unknown enum values, long lists, odd strings."""
    if isinstance(type_, GraphQLNonNull):
        inner = _values(type_.of_type, name, wild, depth + 1)
        return st.one_of(inner, st.none()) if wild and depth == 0 else inner
    nullable = st.none()
    if isinstance(type_, GraphQLList):
        item = _values(type_.of_type, name, wild, depth + 1)
        lists = st.lists(item, min_size=0 if wild else 1, max_size=4)
        if not wild:
            return lists
        return st.one_of(nullable, lists, item.map(lambda value: [value] * 1001))
    if isinstance(type_, GraphQLEnumType):
        valid = st.sampled_from(sorted(type_.values))
        return st.one_of(nullable, valid, st.sampled_from(["NOPE", "minute", ""])) if wild else valid
    if isinstance(type_, GraphQLInputObjectType):
        required = {
            field_name: _values(field.type, field_name, wild, depth + 1)
            for field_name, field in type_.fields.items()
            if isinstance(field.type, GraphQLNonNull)
        }
        optional = {
            field_name: _values(field.type, field_name, wild, depth + 1)
            for field_name, field in type_.fields.items()
            if not isinstance(field.type, GraphQLNonNull)
        }
        objects = st.fixed_dictionaries(required, optional=optional)
        return st.one_of(nullable, objects) if wild else objects
    assert isinstance(type_, GraphQLScalarType)
    return st.one_of(nullable, _scalar(type_, name, wild)) if wild else _scalar(type_, name, wild)


def _literal(value: Any, type_: GraphQLInputType) -> str:
    """``value`` as a GraphQL literal of ``type_`` (enums bare, objects unquoted keys)."""
    if value is None:
        return "null"
    named = get_named_type(type_)
    if isinstance(value, list):
        inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
        item_type = inner.of_type if isinstance(inner, GraphQLList) else inner
        return "[" + ", ".join(_literal(item, item_type) for item in value) + "]"
    if isinstance(value, dict):
        fields = named.fields if isinstance(named, GraphQLInputObjectType) else {}
        parts = [
            f"{key}: {_literal(item, fields[key].type if key in fields else named)}" for key, item in value.items()
        ]
        return "{" + ", ".join(parts) + "}"
    if isinstance(named, GraphQLEnumType) and isinstance(value, str) and value.isidentifier():
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value) if not isinstance(value, int) else str(value)
    return json.dumps(value)


def _selection(type_: GraphQLNamedType, depth: int = 0) -> str:
    if not isinstance(type_, GraphQLObjectType):
        return ""
    parts = []
    for name, field in type_.fields.items():
        inner = get_named_type(field.type)
        if isinstance(inner, GraphQLObjectType):
            if depth < 2:
                parts.append(f"{name} {_selection(inner, depth + 1)}")
        elif not field.args or all(not isinstance(a.type, GraphQLNonNull) for a in field.args.values()):
            parts.append(name)
    return "{ " + " ".join(parts) + " }"


def _variable_type(type_: GraphQLInputType) -> str:
    return str(type_)


@st.composite
def _operation(draw: st.DrawFn, kind: str, name: str, field: GraphQLField) -> tuple[str, dict[str, Any]]:
    """A document calling ``field`` once, with drawn arguments as variables or literals."""
    arguments = []
    definitions = []
    variables: dict[str, Any] = {}
    wild = draw(st.integers(0, 3)) == 0  # mostly well-typed values, to reach the resolvers
    for arg_name, arg in field.args.items():
        if not isinstance(arg.type, GraphQLNonNull) and draw(st.integers(0, 2)) > 0:
            continue  # leave an optional argument out
        value = draw(_values(arg.type, arg_name, wild))
        if draw(st.booleans()):
            definitions.append(f"${arg_name}: {_variable_type(arg.type)}")
            variables[arg_name] = value
            arguments.append(f"{arg_name}: ${arg_name}")
        else:
            arguments.append(f"{arg_name}: {_literal(value, arg.type)}")
    head = f"{kind} Fuzz({', '.join(definitions)})" if definitions else kind
    call = f"{name}({', '.join(arguments)})" if arguments else name
    return f"{head} {{ {call} {_selection(get_named_type(field.type))} }}", variables


def _check_graphql_response(body: dict[str, Any], query: str) -> None:
    for error in body.get("errors") or ():
        code = (error.get("extensions") or {}).get("code")
        assert code, f"error without extensions.code: {error} for {query[:300]}"
        assert code != "INTERNAL_SERVER_ERROR", f"server fault: {error} for {query[:300]}"


def _first_frame(client: FlaskClient, secret: str, query: str, variables: dict[str, Any]) -> None:
    response = client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={**bearer(secret), "Accept": "text/event-stream"},
    )
    try:
        assert response.status_code < 500, response.status_code
        if not response.mimetype.startswith("text/event-stream"):
            body = response.get_json()
            if body is not None and "errors" in body:
                _check_graphql_response(body, query)
            return
        seen = ""
        for chunk in response.response:
            seen += (chunk.decode() if isinstance(chunk, bytes) else chunk).replace("\r\n", "\n")
            if ("event: next" in seen and "\n\n" in seen.split("event: next", 1)[1]) or "event: complete" in seen:
                break
        for block in seen.split("\n\n"):
            lines = dict(
                line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
            )
            if lines.get("event") == "next":
                _check_graphql_response(json.loads(lines["data"]), query)
                return
        assert "event: complete" in seen, seen[:500]
    finally:
        response.close()


@pytest.fixture
def seeded(client: FlaskClient, keys: Keys, settings: Settings) -> FlaskClient:
    """A metric with dimensions, a gauge, and projected sales and stock levels."""
    for mutation in (
        'defineMetric(input: {name: "revenue", eventType: "sale", aggregation: SUM, valueProperty: "amount",'
        ' dimensions: ["product", "store"]}) { name }',
        'defineGauge(input: {name: "stock", eventType: "stock", valueProperty: "level", keyProperty: "product"})'
        " { name }",
    ):
        assert (
            "errors"
            not in client.post(
                "/graphql", json={"query": f"mutation {{ {mutation} }}"}, headers=bearer(keys.admin)
            ).json
        )
    events = [sale(i) for i in range(5)] + [
        {"type": "stock", "occurredAt": "2026-01-01T00:00:00Z", "properties": {"product": "p", "level": 3}}
    ]
    assert client.post("/v1/events", json={"events": events}, headers=bearer(keys.ingest)).status_code == 202
    own = bootstrap(settings)  # a worker of its own, as `pulse worker` is
    own.worker().catch_up()
    own.close()
    return client


@pytest.fixture
def client_schema(client: FlaskClient, keys: Keys) -> GraphQLSchema:
    body = client.post("/graphql", json={"query": get_introspection_query()}, headers=bearer(keys.read)).json
    return build_client_schema(body["data"])


def _root_fields() -> Iterator[tuple[str, str]]:
    from api.graphql_schema import schema

    roots = schema._schema
    for kind, root in (
        ("query", roots.query_type),
        ("mutation", roots.mutation_type),
        ("subscription", roots.subscription_type),
    ):
        for name in root.fields if root else {}:
            yield kind, name


@http_layer_only
@pytest.mark.parametrize(("kind", "name"), list(_root_fields()))
def test_generated_arguments_never_make_a_500_or_an_uncoded_error(
    seeded: FlaskClient, keys: Keys, client_schema: GraphQLSchema, kind: str, name: str
) -> None:
    root = {"query": client_schema.query_type, "mutation": client_schema.mutation_type}.get(
        kind, client_schema.subscription_type
    )
    field = root.fields[name]

    @settings(
        max_examples=EXAMPLES * max(1, len(field.args) // 2),  # more for more arguments
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_operation(kind, name, field))
    def check(operation: tuple[str, dict[str, Any]]) -> None:
        query, variables = operation
        if kind == "subscription":
            _first_frame(seeded, keys.admin, query, variables)
            return
        response = seeded.post("/graphql", json={"query": query, "variables": variables}, headers=bearer(keys.admin))
        assert response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:500], query[:300])
        body = response.get_json()
        assert body is not None, response.get_data(as_text=True)[:300]
        if "errors" in body:
            _check_graphql_response(body, query)
        elif response.status_code != 200:  # refused at the HTTP level (413...): a JSON message
            assert 400 <= response.status_code < 500 and body["message"], body

    check()
