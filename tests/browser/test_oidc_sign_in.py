"""Sign-in with an OIDC issuer's hosted UI (as Amazon Cognito's): the app sends the browser to
the authorization endpoint with a PKCE challenge (S256) and a state, and on the way back trades
the code and its verifier for an ID token, which Pulse then accepts as the bearer.

The issuer is a fake on 127.0.0.1 that does what Cognito does on these endpoints, and refuses
(400) a token request whose verifier does not hash to the challenge it was given."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.sync_api import Page, expect

from tests.e2e.test_live_subscriptions import Server

CLIENT = "web-app-client"


class HostedUi:
    """Discovery, JWKS, /authorize (signs the user in at once) and /token, like Cognito's."""

    def __init__(self, groups: list[str]) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.groups = groups
        self.authorized: list[dict[str, str]] = []
        self.exchanged: list[dict[str, str]] = []
        self.codes: dict[str, dict[str, str]] = {}
        ui = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Access-Control-Allow-Origin", "*")  # Cognito's token endpoint allows CORS
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self._send(200, ui.discovery())
                elif url.path == "/.well-known/jwks.json":
                    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(ui.key.public_key()))
                    self._send(200, {"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]})
                elif url.path == "/authorize":
                    query = {name: values[0] for name, values in parse_qs(url.query).items()}
                    ui.authorized.append(query)
                    code = secrets.token_urlsafe(12)
                    ui.codes[code] = query
                    back = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
                    self.send_response(302)
                    self.send_header("Location", back)
                    self.end_headers()
                else:
                    self._send(404, {"error": "not_found"})

            def do_POST(self) -> None:
                form = {
                    k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()
                }
                ui.exchanged.append(form)
                asked = ui.codes.pop(form.get("code", ""), None)
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                if (
                    asked is None
                    or form.get("grant_type") != "authorization_code"
                    or form.get("client_id") != CLIENT
                    or form.get("redirect_uri") != asked["redirect_uri"]
                    or challenge != asked["code_challenge"]
                ):
                    self._send(400, {"error": "invalid_grant"})
                    return
                self._send(200, {"id_token": ui.token(), "access_token": "unused", "token_type": "Bearer"})

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/.well-known/jwks.json",
        }

    def token(self) -> str:
        now = int(time.time())
        claims = {"sub": "ana", "iss": self.url, "aud": CLIENT, "token_use": "id", "iat": now, "exp": now + 3600}
        return jwt.encode({**claims, "cognito:groups": self.groups}, self.key, algorithm="RS256", headers={"kid": "k1"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hosted_ui() -> Iterator[HostedUi]:
    ui = HostedUi(groups=["editor"])
    yield ui
    ui.close()


def test_signing_in_through_the_hosted_ui_with_pkce(
    hosted_ui: HostedUi, tmp_path: Path, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULSE_OIDC_ISSUER", hosted_ui.url)
    monkeypatch.setenv("PULSE_OIDC_CLIENT_ID", CLIENT)
    server = Server(tmp_path / "oidc")
    try:
        page.goto(f"{server.url}/")
        page.get_by_role("button", name=f"Sign in with {urlsplit(hosted_ui.url).netloc}").click()
        expect(page.get_by_text("Signed in (editor)")).to_be_visible()
        expect(page).to_have_url(f"{server.url}/")  # the code is gone from the address bar

        asked = hosted_ui.authorized[0]
        assert asked["code_challenge_method"] == "S256" and asked["client_id"] == CLIENT
        assert asked["redirect_uri"] == f"{server.url}/" and asked["response_type"] == "code"
        assert len(hosted_ui.exchanged) == 1  # one exchange, and the fake checked the verifier
        token = page.evaluate("sessionStorage.getItem('pulse.key')")
        assert token.count(".") == 2  # the ID token is the bearer now
        # Pulse accepts it: the editor may create a dashboard from the app.
        page.get_by_role("link", name="New dashboard").click()
        page.get_by_label("Name", exact=True).fill("Signed in")
        page.get_by_role("button", name="Create draft").click()
        expect(page).to_have_url(f"{server.url}/edit/signed-in")
    finally:
        server.stop()


def test_a_return_with_another_state_is_refused(
    hosted_ui: HostedUi, tmp_path: Path, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULSE_OIDC_ISSUER", hosted_ui.url)
    monkeypatch.setenv("PULSE_OIDC_CLIENT_ID", CLIENT)
    server = Server(tmp_path / "oidc-state")
    try:
        page.goto(f"{server.url}/?code=stolen&state=forged")  # a crafted link, no sign-in started here
        expect(page.get_by_role("alert")).to_contain_text("does not match")
        assert hosted_ui.exchanged == []
        assert page.evaluate("sessionStorage.getItem('pulse.key')") is None
    finally:
        server.stop()
