"""The web app at /: every page is the app's shell, served under a strict CSP, and nothing it
loads (HTML, modules, styles, the modules' imports) points at another host."""

from __future__ import annotations

import json
import re
import socket
import threading
from dataclasses import replace
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from api.webapp import APP_DIR
from bootstrap import Pulse
from domain.clock import FrozenClock
from domain.settings import Settings
from tests.api.conftest import Keys, bearer, http_layer_only

pytestmark = http_layer_only

PAGES = ["/", "/d/coffee-shops-live", "/d/no-such-dashboard", "/new", "/edit/coffee-shops-live", "/ops"]
# Static imports (`import … from '…'`), dynamic ones (`import('…')`), CSS url(…) and @import.
REFERENCES = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*|url\(\s*|@import\s+)['"]?([^'")\s;]+)""")


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for attribute in ("src", "href"):
            if named.get(attribute) and tag in ("script", "link", "img", "iframe"):
                self.urls.append((tag, named[attribute] or ""))


def _is_local(url: str) -> bool:
    return url.startswith("data:") or (url.startswith("/") and not url.startswith("//")) or url.startswith("./")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_serves_the_app_under_a_strict_csp(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert '<script type="module" src="/app/main.js">' in response.get_data(as_text=True)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src" not in policy  # scripts fall back to 'self': no inline, no eval, no other host
    assert "unsafe" not in policy


@pytest.mark.parametrize("who", ["anonymous", "ingest", "read", "admin", "revoked", "garbage"])
def test_pages_are_the_same_public_shell_whoever_asks(client: FlaskClient, keys: Keys, who: str) -> None:
    """The shell holds no data: every page is served to anyone, whatever key comes with it (a
    revoked or malformed one included); what the app then shows comes from GraphQL, under its
    rules (a private dashboard is NOT_FOUND without read)."""
    secret = {"anonymous": None, "garbage": "not-a-key"}.get(who, getattr(keys, who, None))
    headers = bearer(secret) if secret else {}
    shell = client.get("/").get_data()
    for path in PAGES:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (who, path)
        assert response.get_data() == shell


def test_no_page_loads_a_script_or_style_from_another_host(client: FlaskClient) -> None:
    parser = _Assets()
    parser.feed(client.get("/").get_data(as_text=True))
    assert {url for _, url in parser.urls} >= {"/app/main.js", "/app/app.css", "/vendor/chart.js/chart.umd.min.js"}
    for tag, url in parser.urls:
        assert _is_local(url), (tag, url)
        if not url.startswith("data:"):
            assert client.get(url).status_code == 200, url

    seen: set[str] = set()
    queue = [url for _, url in parser.urls if url.endswith((".js", ".mjs", ".css"))]
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        base = url.rsplit("/", 1)[0]
        for found in REFERENCES.findall(response.get_data(as_text=True)):
            if not found.endswith((".js", ".mjs", ".css")):
                continue  # a word after `from` in prose or minified code, not a module
            assert _is_local(found), (url, found)
            queue.append(found if found.startswith("/") else f"{base}/{found.removeprefix('./')}")
    # Every module of the app and of graphql-sse was reached and is local.
    assert {f"/app/{path.name}" for path in APP_DIR.glob("*.js")} <= seen
    assert "/vendor/graphql-sse/client.mjs" in seen and "/vendor/graphql-sse/parser.mjs" in seen


def test_modules_are_served_as_javascript(client: FlaskClient) -> None:
    for url in ("/app/main.js", "/vendor/graphql-sse/client.mjs", "/vendor/chart.js/chart.umd.min.js"):
        assert client.get(url).mimetype == "text/javascript", url
    assert client.get("/app/app.css").mimetype == "text/css"


def test_only_the_vendored_packages_and_app_files_are_served(client: FlaskClient) -> None:
    assert client.get("/vendor/graphiql/README.md").status_code == 404  # GraphiQL's has its own route
    assert client.get("/vendor/chart.js/../../webapp.py").status_code == 404
    assert client.get("/app/../webapp.py").status_code == 404
    assert client.get("/app/nothing-here.js").status_code == 404


def test_without_an_issuer_the_app_offers_api_keys_only(client: FlaskClient) -> None:
    assert client.get("/config.json").json == {"oidc": None}
    assert "connect-src" not in client.get("/").headers["Content-Security-Policy"]


def _configured(settings: Settings, pulse: Pulse, clock: FrozenClock, issuer: str) -> FlaskClient:
    configured = replace(settings, oidc_issuer=issuer, oidc_client_id="web-client")
    return create_app(configured, pulse.with_settings(configured, clock), clock).test_client()


def test_with_an_issuer_the_app_gets_its_endpoints_and_may_post_to_its_token_endpoint(
    settings: Settings, pulse: Pulse, clock: FrozenClock
) -> None:
    token_host = "https://pulse-test.auth.eu-west-1.amazoncognito.com"
    document = {
        "authorization_endpoint": f"{token_host}/oauth2/authorize",
        "token_endpoint": f"{token_host}/oauth2/token",
    }

    class Discovery(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(document).encode() if self.path == "/pool/.well-known/openid-configuration" else b"{}"
            self.send_response(200 if body != b"{}" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Discovery)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        issuer = f"http://127.0.0.1:{server.server_address[1]}/pool"
        client = _configured(settings, pulse, clock, issuer)
        assert client.get("/config.json").json == {
            "oidc": {
                "issuer": issuer,
                "clientId": "web-client",
                "authorizationEndpoint": document["authorization_endpoint"],
                "tokenEndpoint": document["token_endpoint"],
                "scope": "openid email profile",
            }
        }
        assert client.get("/").headers["Content-Security-Policy"].endswith(f"connect-src 'self' {token_host}")
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_issuer_leaves_api_keys_not_a_500(settings: Settings, pulse: Pulse, clock: FrozenClock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening: refused
        client = _configured(settings, pulse, clock, dead)
        assert client.get("/config.json").json == {"oidc": None}
        response = client.get("/d/anything")
    assert response.status_code == 200
    assert "connect-src" not in response.headers["Content-Security-Policy"]
