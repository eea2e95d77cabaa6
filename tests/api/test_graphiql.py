"""GET /graphql in a browser: GraphiQL works offline and under a CSP allowing only 'self'."""

from __future__ import annotations

import base64
import hashlib
from html.parser import HTMLParser

import pytest
from flask.testing import FlaskClient

from tests.api.conftest import http_layer_only

pytestmark = http_layer_only


class _Assets(HTMLParser):
    """Every URL the page loads through a script or link tag, with its integrity hash."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str | None]] = []  # (tag, url, integrity)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        url = named.get("src") if tag == "script" else named.get("href") if tag == "link" else None
        if url:
            self.urls.append((tag, url, named.get("integrity")))


def graphiql_page(client: FlaskClient) -> str:
    response = client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def page_assets(client: FlaskClient) -> list[tuple[str, str, str | None]]:
    parser = _Assets()
    parser.feed(graphiql_page(client))
    return parser.urls


def test_the_page_references_no_other_host(client: FlaskClient) -> None:
    html = graphiql_page(client)
    assert "unpkg.com" not in html
    assets = page_assets(client)
    scripts = [url for tag, url, _ in assets if tag == "script"]
    assert len(scripts) >= 4  # React, ReactDOM, js-cookie, GraphiQL, the explorer plugin
    for tag, url, _ in assets:
        if url.startswith("data:"):
            continue  # the inline favicon
        assert not url.startswith(("http:", "https:", "//")), (tag, url)
        assert url.startswith("/static/graphiql/"), (tag, url)


@pytest.mark.parametrize("kind", ["script", "link"])
def test_every_asset_is_served_with_its_type_and_matches_its_integrity_hash(client: FlaskClient, kind: str) -> None:
    expected = {"script": "text/javascript", "link": "text/css"}[kind]
    served = 0
    for tag, url, integrity in page_assets(client):
        if tag != kind or url.startswith("data:"):
            continue
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.mimetype == expected, (url, response.mimetype)
        body = response.get_data()
        assert body, url
        if integrity:  # the browser refuses the file if the hash does not match
            algorithm, digest = integrity.split("-", 1)
            assert base64.b64encode(hashlib.new(algorithm, body).digest()).decode() == digest, url
        served += 1
    assert served >= 2


def test_unknown_asset_is_404_json(client: FlaskClient) -> None:
    response = client.get("/static/graphiql/nothing-here.js")
    assert response.status_code == 404
    assert "message" in response.get_json()
