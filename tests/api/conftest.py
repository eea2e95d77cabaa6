"""Fixtures for the HTTP API tests: a real store per backend, the real app, real keys."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from bootstrap import Pulse
from domain.clock import FrozenClock
from domain.keys import create_key
from domain.ports import EventStore
from domain.settings import Settings
from tests.support import all_facts  # noqa: F401 - re-exported for the tests here

# For tests of the HTTP layer alone (parsing, limits, content types): the store does not
# change their outcome, so they run on SQLite only; one test per status code still runs
# on both backends.
http_layer_only = pytest.mark.parametrize("settings", ["sqlite"], indirect=True)


@pytest.fixture
def store(pulse: Pulse) -> EventStore:
    return pulse.store


@dataclass(frozen=True)
class Keys:
    """A secret per scope, created through the real key aggregate before the app starts."""

    ingest: str
    read: str
    admin: str
    revoked: str


@pytest.fixture
def keys(store: EventStore) -> Keys:
    from domain.keys import revoke_key

    revoked, revoked_secret = create_key(store, "old-pos", ["ingest"])
    revoke_key(store, revoked.id)
    return Keys(
        ingest=create_key(store, "pos-store-12", ["ingest"])[1],
        read=create_key(store, "dashboard", ["read"])[1],
        admin=create_key(store, "ops", ["admin"])[1],
        revoked=revoked_secret,
    )


@pytest.fixture
def app(settings: Settings, pulse: Pulse, keys: Keys, clock: FrozenClock) -> Flask:
    """The app, its clock frozen (tests/support.py): "now" is the same for the test and it."""
    return create_app(settings, pulse, clock)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def sale(index: int = 0, **overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "id": f"sale-{index}",
        "type": "sale",
        "occurredAt": "2026-11-23T12:00:00+01:00",
        "source": "pos-store-12",
        "properties": {"amount": 19.99, "product": "sku-1234", "gift": False, "coupon": None},
    }
    event.update(overrides)
    return event
