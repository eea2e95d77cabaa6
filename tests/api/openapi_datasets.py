"""The requests that provoke each documented response of the dataset and export
endpoints (tests/api/test_openapi.py runs them against openapi/openapi.yaml)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient

from tests.api.conftest import Keys, bearer

Send = Callable[[FlaskClient, Keys], Any]
PRICES = "product,price\nlatte,4.2\nmuffin,3.1\n"
JSON = {"Content-Type": "application/json"}


ADMIN = lambda keys: keys.admin  # noqa: E731


def _upload(client: FlaskClient, keys: Keys, name: str = "prices") -> None:
    response = client.post("/v1/datasets", json={"name": name, "data": PRICES}, headers=bearer(keys.admin))
    assert response.status_code == 201, response.json


def _dashboard(client: FlaskClient, keys: Keys, widget: dict[str, Any], visibility: str = "PUBLIC") -> None:
    create = "mutation($input: DashboardInput!) { createDashboard(input: $input) { slug } }"
    publish = 'mutation { publishDashboard(slug: "menu") { state } }'
    spec = {"slug": "menu", "name": "Menu", "visibility": visibility, "widgets": [widget]}
    for query, variables in ((create, {"input": spec}), (publish, {})):
        body = client.post("/graphql", json={"query": query, "variables": variables}, headers=bearer(keys.admin)).json
        assert "errors" not in body, body


TABLE = {"id": "prices", "kind": "TABLE", "title": "Prices", "source": {"kind": "DATASET", "dataset": "prices"}}
BROKEN = {"id": "gone", "kind": "KPI", "title": "Gone", "source": {"kind": "SERIES", "metric": "gone"}}


def _post(body: Any, secret: Callable[[Keys], str | None], headers: dict[str, str] = JSON) -> Send:
    def send(client: FlaskClient, keys: Keys) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        key = secret(keys)
        return client.post("/v1/datasets", data=data, headers={**headers, **(bearer(key) if key else {})})

    return send


def _then(setup: Callable[[FlaskClient, Keys], None], send: Send) -> Send:
    def run(client: FlaskClient, keys: Keys) -> Any:
        setup(client, keys)
        return send(client, keys)

    return run


def _put(body: Any, name: str = "prices") -> Send:
    return lambda client, keys: client.put(f"/v1/datasets/{name}", json=body, headers=bearer(keys.admin))


def _get(path: str, secret: Callable[[Keys], str | None] = lambda keys: keys.read) -> Send:
    def send(client: FlaskClient, keys: Keys) -> Any:
        key = secret(keys)
        return client.get(path, headers=bearer(key) if key else {})

    return send


def _delete(secret: Callable[[Keys], str | None] = lambda keys: keys.admin) -> Send:
    def send(client: FlaskClient, keys: Keys) -> Any:
        key = secret(keys)
        return client.delete("/v1/datasets/prices", headers=bearer(key) if key else {})

    return send


GOOD = {"name": "prices", "data": PRICES}
DATASET = "/v1/datasets/{name}"
EXPORT = "/v1/datasets/{name}.csv"
WIDGET = "/v1/dashboards/{slug}/widgets/{widget}.csv"

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _image(data: bytes, secret: Callable[[Keys], str | None], kind: str = "image/png") -> Send:
    def send(client: FlaskClient, keys: Keys) -> Any:
        key = secret(keys)
        return client.post("/v1/images", data=data, headers={"Content-Type": kind, **(bearer(key) if key else {})})

    return send


def _uploaded_image(client: FlaskClient, keys: Keys) -> Any:
    url = _image(PNG, ADMIN)(client, keys).json["url"]
    return client.get(url)


REQUESTS: dict[tuple[str, str, int], Send] = {
    ("POST", "/v1/images", 201): _image(PNG, ADMIN),
    ("POST", "/v1/images", 401): _image(PNG, lambda keys: None),
    ("POST", "/v1/images", 403): _image(PNG, lambda keys: keys.read),
    ("POST", "/v1/images", 413): _image(PNG + b"\x00" * (2 * 2**20), ADMIN),
    ("POST", "/v1/images", 415): _image(PNG, ADMIN, "text/plain"),
    ("POST", "/v1/images", 422): _image(b"<svg onload=alert(1)></svg>", ADMIN, "image/svg+xml"),
    ("GET", "/v1/images/{id}", 200): _uploaded_image,
    ("GET", "/v1/images/{id}", 404): lambda client, keys: client.get("/v1/images/" + "0" * 32 + ".png"),
    ("POST", "/v1/datasets", 201): _post(GOOD, ADMIN),
    ("POST", "/v1/datasets", 400): _post(b'{"name": ', ADMIN),
    ("POST", "/v1/datasets", 401): _post(GOOD, lambda keys: None),
    ("POST", "/v1/datasets", 403): _post(GOOD, lambda keys: keys.read),
    ("POST", "/v1/datasets", 409): _then(_upload, _post(GOOD, ADMIN)),
    ("POST", "/v1/datasets", 413): _post({"name": "prices", "data": "a\n" + "1\n" * 60_000}, ADMIN),
    ("POST", "/v1/datasets", 415): _post(b"<xml/>", ADMIN, {"Content-Type": "application/xml"}),
    ("POST", "/v1/datasets", 422): _post(
        {"name": "prices", "data": PRICES + "scone,cheap\n", "types": {"price": "NUMBER"}}, ADMIN
    ),
    ("GET", "/v1/datasets", 200): _then(_upload, _get("/v1/datasets")),
    ("GET", "/v1/datasets", 401): _get("/v1/datasets", lambda keys: None),
    ("GET", "/v1/datasets", 403): _get("/v1/datasets", lambda keys: keys.ingest),
    ("GET", DATASET, 200): _then(_upload, _get("/v1/datasets/prices")),
    ("GET", DATASET, 401): _get("/v1/datasets/prices", lambda keys: None),
    ("GET", DATASET, 403): _get("/v1/datasets/prices", lambda keys: keys.ingest),
    ("GET", DATASET, 404): _get("/v1/datasets/prices"),
    ("PUT", DATASET, 200): _then(_upload, _put({"data": PRICES})),
    ("PUT", DATASET, 400): lambda client, keys: client.put(
        "/v1/datasets/prices", data=b"{", headers={**JSON, **bearer(keys.admin)}
    ),
    ("PUT", DATASET, 401): lambda client, keys: client.put("/v1/datasets/prices", json={"data": PRICES}),
    ("PUT", DATASET, 403): lambda client, keys: client.put(
        "/v1/datasets/prices", json={"data": PRICES}, headers=bearer(keys.read)
    ),
    ("PUT", DATASET, 404): _put({"data": PRICES}),
    ("PUT", DATASET, 413): _then(_upload, _put({"data": "a\n" + "1\n" * 60_000})),
    ("PUT", DATASET, 415): lambda client, keys: client.put(
        "/v1/datasets/prices", data=b"<xml/>", headers={"Content-Type": "application/xml", **bearer(keys.admin)}
    ),
    ("PUT", DATASET, 422): _put({"data": "a,b\n1\n"}),
    ("DELETE", DATASET, 200): _then(_upload, _delete()),
    ("DELETE", DATASET, 401): _delete(lambda keys: None),
    ("DELETE", DATASET, 403): _delete(lambda keys: keys.read),
    ("DELETE", DATASET, 404): _delete(),
    ("DELETE", DATASET, 409): _then(lambda c, k: (_upload(c, k), _dashboard(c, k, TABLE)), _delete()),
    ("GET", EXPORT, 200): _then(_upload, _get("/v1/datasets/prices.csv")),
    ("GET", EXPORT, 401): _get("/v1/datasets/prices.csv", lambda keys: None),
    ("GET", EXPORT, 403): _get("/v1/datasets/prices.csv", lambda keys: keys.ingest),
    ("GET", EXPORT, 404): _get("/v1/datasets/prices.csv"),
    ("GET", WIDGET, 200): _then(
        lambda c, k: (_upload(c, k), _dashboard(c, k, TABLE)),
        _get("/v1/dashboards/menu/widgets/prices.csv", lambda keys: None),
    ),
    ("GET", WIDGET, 401): _get("/v1/dashboards/menu/widgets/prices.csv", lambda keys: keys.revoked),
    ("GET", WIDGET, 404): _then(
        lambda c, k: _dashboard(c, k, TABLE, "PRIVATE"),
        _get("/v1/dashboards/menu/widgets/prices.csv", lambda keys: None),
    ),
    ("GET", WIDGET, 422): _then(lambda c, k: _dashboard(c, k, BROKEN), _get("/v1/dashboards/menu/widgets/gone.csv")),
}
