"""Sign-in tokens (JWT from Cognito or any OIDC issuer) beside API keys.

The issuer is played by a real local HTTP server serving a JWKS of test RSA keys; tokens
are signed with those keys at the frozen clock's now. Every forged or misdirected token is
refused with a 401 naming the reason; groups map to scopes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient

from api.app import create_app
from bootstrap import Pulse
from domain.clock import FrozenClock
from domain.settings import Settings
from services import oidc
from tests.api.conftest import Keys, bearer, http_layer_only

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool"
CLIENT = "pulse-web-client"
METRICS = "{ metrics { name } }"
DEFINE = 'mutation { defineMetric(input: {name: "orders_x", eventType: "sale"}) { name } }'


class Issuer:
    """A JWKS endpoint on 127.0.0.1 with keys that can rotate; counts the fetches."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {"k1": _new_key()}
        self.fetches = 0
        self.up = True
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                if not issuer.up:
                    self.send_error(503)
                    return
                body = json.dumps({"keys": [issuer.public_jwk(kid) for kid in issuer.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"

    def public_jwk(self, kid: str) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}

    def token(self, now: float, kid: str = "k1", key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        body = {
            "sub": "0b1d-user",
            "iss": ISSUER,
            "aud": CLIENT,
            "token_use": "id",
            "email": "ana@example.com",
            "cognito:groups": ["viewer"],
            "iat": int(now) - 10,
            "exp": int(now) + 3600,
            **claims,
        }
        body = {name: value for name, value in body.items() if value is not None}
        return jwt.encode(body, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    yield found
    found.close()


@pytest.fixture
def signed_in(settings: Settings, pulse: Pulse, keys: Keys, clock: FrozenClock, issuer: Issuer) -> FlaskClient:
    configured = replace(settings, oidc_issuer=ISSUER, oidc_client_id=CLIENT, oidc_jwks_url=issuer.url)
    return create_app(configured, pulse.with_settings(configured, clock), clock).test_client()


def graphql(client: FlaskClient, query: str, token: str) -> tuple[int, dict[str, Any]]:
    response = client.post("/graphql", json={"query": query}, headers=bearer(token))
    return response.status_code, response.get_json()


def code_of(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    return errors[0]["extensions"]["code"] if errors else None


@http_layer_only
def test_groups_map_to_scopes_and_api_keys_keep_working(
    signed_in: FlaskClient, issuer: Issuer, clock: FrozenClock, keys: Keys
) -> None:
    now = clock.now()
    viewer = issuer.token(now)
    admin_access = issuer.token(
        now, token_use="access", aud=None, client_id=CLIENT, **{"cognito:groups": ["admin"]}
    )
    editor = issuer.token(now, **{"cognito:groups": ["editor", "unmapped"]})
    nobody = issuer.token(now, **{"cognito:groups": None})

    assert code_of(graphql(signed_in, METRICS, viewer)[1]) is None
    assert code_of(graphql(signed_in, DEFINE, viewer)[1]) == "FORBIDDEN"
    assert code_of(graphql(signed_in, METRICS, editor)[1]) is None  # editor implies read
    assert code_of(graphql(signed_in, DEFINE, admin_access)[1]) is None
    assert code_of(graphql(signed_in, METRICS, nobody)[1]) == "FORBIDDEN"
    refused = signed_in.post("/v1/events", json={"events": []}, headers=bearer(viewer))
    assert refused.status_code == 403
    assert refused.get_json()["message"] == "ana@example.com (user 0b1d-user) lacks the 'ingest' scope; it has read"
    # API keys beside tokens.
    assert code_of(graphql(signed_in, METRICS, keys.read)[1]) is None
    assert code_of(graphql(signed_in, METRICS, keys.revoked)[1]) == "UNAUTHENTICATED"


#: A word of the reason each forgery's refusal gives.
REASONS = {
    "wrong issuer": "issuer",
    "wrong audience": "another app client (aud)",
    "access token of another client": "another app client (client_id)",
    "expired": "expired",
    "not yet valid": "not valid yet",
    "wrong signature": "Signature verification failed",
    "unknown kid": "'k9' is not among the issuer's signing keys",
    "alg none": "RS256, not 'none'",
    "HS256 with the public key": "RS256, not 'HS256'",
    "refresh token use": "token_use 'refresh'",
    "no subject": '"sub"',
    "garbage": "malformed",
}


def _hmac_forgery(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """Signed by hand: PyJWT itself refuses to use a public key as an HMAC secret."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing_input = f"{part(header)}.{part(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _forgeries(issuer: Issuer, now: float) -> dict[str, str]:
    other_key = _new_key()
    public_pem = issuer.keys["k1"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = jwt.encode({"sub": "x", "iss": ISSUER, "aud": CLIENT, "exp": int(now) + 60}, None, algorithm="none")
    return {
        "wrong issuer": issuer.token(now, iss="https://evil.example.com/pool"),
        "wrong audience": issuer.token(now, aud="another-client"),
        "access token of another client": issuer.token(now, token_use="access", aud=None, client_id="another"),
        "expired": issuer.token(now, iat=int(now) - 7200, exp=int(now) - 3600),
        "not yet valid": issuer.token(now, nbf=int(now) + 3600),
        "wrong signature": issuer.token(now, key=other_key),
        "unknown kid": issuer.token(now, kid="k9", key=other_key),
        "alg none": unsigned,
        # The public key as an HMAC secret: anyone holding the public key could sign.
        "HS256 with the public key": _hmac_forgery(
            {"alg": "HS256", "kid": "k1", "typ": "JWT"},
            {"sub": "x", "iss": ISSUER, "aud": CLIENT, "exp": int(now) + 60},
            public_pem,
        ),
        "refresh token use": issuer.token(now, token_use="refresh"),
        "no subject": issuer.token(now, sub=None),
        "garbage": "eyJhbGciOi.not-base64.at-all",
    }


@http_layer_only
def test_forged_and_misdirected_tokens_are_refused_with_the_reason(
    signed_in: FlaskClient, issuer: Issuer, clock: FrozenClock
) -> None:
    for case, token in _forgeries(issuer, clock.now()).items():
        status, body = graphql(signed_in, METRICS, token)
        assert status == 200 and code_of(body) == "UNAUTHENTICATED", case
        assert REASONS[case] in body["errors"][0]["message"], case
        rest = signed_in.post("/v1/events", json={"events": []}, headers=bearer(token))
        assert rest.status_code == 401, (case, rest.get_json())
        assert rest.headers["WWW-Authenticate"].startswith("Bearer")


@http_layer_only
def test_rotated_keys_are_fetched_and_made_up_kids_cost_one_fetch_a_minute(
    signed_in: FlaskClient, issuer: Issuer, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = clock.now()
    assert code_of(graphql(signed_in, METRICS, issuer.token(now))[1]) is None
    assert issuer.fetches == 1
    for n in range(20):
        assert code_of(graphql(signed_in, METRICS, issuer.token(now, kid=f"made-up-{n}", key=_new_key()))[1]) == (
            "UNAUTHENTICATED"
        )
    assert issuer.fetches == 1  # within the minute, no refetch
    issuer.keys["k2"] = _new_key()  # the issuer rotates
    monkeypatch.setattr(oidc, "REFETCH_SECONDS", 0.0)
    assert code_of(graphql(signed_in, METRICS, issuer.token(now, kid="k2"))[1]) is None
    assert issuer.fetches == 2


@http_layer_only
def test_an_unreachable_issuer_is_a_503_not_the_callers_fault(
    signed_in: FlaskClient, issuer: Issuer, clock: FrozenClock
) -> None:
    issuer.up = False
    token = issuer.token(clock.now())
    response = signed_in.post("/v1/events", json={"events": []}, headers=bearer(token))
    assert response.status_code == 503
    assert code_of(graphql(signed_in, METRICS, token)[1]) == "UNAVAILABLE"


def test_role_settings_are_checked_at_start() -> None:
    with pytest.raises(ValueError, match="PULSE_OIDC_ROLES"):
        Settings(oidc_roles="viewer:read,ops:superuser")
    with pytest.raises(ValueError, match="PULSE_OIDC_CLIENT_ID"):
        Settings(oidc_issuer=ISSUER)
    assert oidc.parse_roles("viewer:read, ops:read+admin") == {
        "viewer": frozenset({"read"}),
        "ops": frozenset({"read", "admin"}),
    }
