"""CORS: browsers on the configured origins may call the API; others get no grant."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from domain.clock import FrozenClock
from domain.settings import Settings
from tests.api.conftest import bearer, sale

ALLOWED = "https://shop.example"


@pytest.fixture
def cors_client(sqlite_settings: Settings, clock: FrozenClock) -> FlaskClient:
    settings = replace(sqlite_settings, cors_origins=(ALLOWED, "https://admin.example"))
    return create_app(settings, clock=clock).test_client()


def preflight(client: FlaskClient, origin: str):
    return client.options(
        "/v1/events",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, content-encoding",
        },
    )


def test_preflight_from_an_allowed_origin_is_granted(cors_client: FlaskClient) -> None:
    response = preflight(cors_client, ALLOWED)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed_headers = response.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "content-type", "content-encoding"} <= {h.strip() for h in allowed_headers.split(",")}


def test_preflight_from_another_origin_gets_no_grant(cors_client: FlaskClient) -> None:
    response = preflight(cors_client, "https://evil.example")
    assert "Access-Control-Allow-Origin" not in response.headers


def test_responses_expose_retry_after_and_www_authenticate(cors_client: FlaskClient) -> None:
    response = cors_client.post("/v1/events", json={"events": [sale()]}, headers={"Origin": ALLOWED, **bearer("x")})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"retry-after", "www-authenticate"} <= exposed


def test_origins_come_from_pulse_cors_origins() -> None:
    settings = Settings.from_env({"PULSE_CORS_ORIGINS": "https://a.example, https://b.example"})
    assert settings.cors_origins == ("https://a.example", "https://b.example")
