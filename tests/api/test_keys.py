"""API keys: the `pulse keys` commands, what is stored, and how fast a revoke bites."""

from __future__ import annotations

import hashlib
import time

import pytest
from click.testing import CliRunner, Result

from api.app import create_app
from bootstrap import Pulse
from cli import main
from domain.clock import FrozenClock
from domain.keys import KEYS_STREAM, create_key, load_registry, revoke_key
from domain.ports import EventStore
from domain.settings import Settings
from services.keys import KeyCache
from tests.api.conftest import bearer, sale
from tests.support import in_threads, store_args


def pulse(settings: Settings, *args: str) -> Result:
    command, *rest = args
    if command == "keys":
        sub, *rest = rest
        return CliRunner().invoke(main, ["keys", sub, *store_args(settings), *rest])
    raise AssertionError(command)


def test_create_prints_the_secret_once_alone_on_the_last_line(settings: Settings, store: EventStore) -> None:
    created = pulse(settings, "keys", "create", "--name", "pos-store-12", "--scope", "ingest", "--scope", "read")

    assert created.exit_code == 0, created.output
    secret = created.output.rstrip("\n").splitlines()[-1]
    assert secret.startswith("pulse_") and " " not in secret and len(secret) > 40
    assert created.output.count(secret) == 1

    # Only its hash is stored, nowhere the secret itself.
    (event,) = store.read_stream(KEYS_STREAM)
    assert event.properties["secretHash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(event)

    listed = pulse(settings, "keys", "list")
    assert listed.exit_code == 0
    assert "pos-store-12" in listed.output and "ingest,read" in listed.output and "active" in listed.output
    assert secret not in listed.output and event.properties["secretHash"] not in listed.output

    key = load_registry(store).authenticate(secret)
    assert key is not None and key.name == "pos-store-12" and key.scopes == {"ingest", "read"}


def test_revoke_then_list_shows_it_revoked(settings: Settings, store: EventStore) -> None:
    key, secret = create_key(store, "crm", ["ingest"])

    revoked = pulse(settings, "keys", "revoke", key.id)

    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in pulse(settings, "keys", "list").output
    assert load_registry(store).authenticate(secret).revoked  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["create", "--name", "pos-1", "--scope", "superuser"], "unknown scope superuser"),
        (["create", "--name", "pos-1", "--scope", "ingest"], "already exists"),
        (["create", "--name", "has space", "--scope", "ingest"], "not a valid key name"),
        (["create", "--name", "pos-2"], "Missing option '--scope'"),
        (["revoke", "0123456789abcdef"], "no API key with id '0123456789abcdef'"),
    ],
    ids=["bad-scope", "duplicate-name", "bad-name", "no-scope", "unknown-id"],
)
def test_clear_errors(settings: Settings, store: EventStore, args: list[str], expected: str) -> None:
    create_key(store, "pos-1", ["read"])
    result = pulse(settings, "keys", *args)
    assert result.exit_code != 0
    assert expected in result.output
    assert len(load_registry(store).keys) == 1


def test_revoking_twice_is_an_error(settings: Settings, store: EventStore) -> None:
    key, _ = create_key(store, "pos-1", ["read"])
    revoke_key(store, key.id)
    result = pulse(settings, "keys", "revoke", key.id)
    assert result.exit_code != 0 and "already revoked" in result.output


def test_concurrent_creators_all_succeed(store: EventStore) -> None:
    # Each append expects the version it read; losers of a race reload and retry.
    errors: list[Exception] = []

    def create(n: int) -> None:
        try:
            create_key(store, f"till-{n}", ["ingest"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    in_threads(create, range(4))
    assert errors == []
    registry = load_registry(store)
    assert sorted(key.name for key in registry.keys.values()) == [f"till-{n}" for n in range(4)]
    assert registry.version == 4


def test_the_cache_reads_the_stream_at_most_once_per_interval(store: EventStore) -> None:
    now = [100.0]
    cache = KeyCache(store, refresh_seconds=1.0, clock=lambda: now[0])
    key, secret = create_key(store, "pos-1", ["ingest"])
    assert cache.registry().authenticate(secret) is not None

    revoke_key(store, key.id)
    now[0] += 0.5
    assert not cache.registry().authenticate(secret).revoked  # type: ignore[union-attr]  # still cached
    now[0] += 0.5
    assert cache.registry().authenticate(secret).revoked  # type: ignore[union-attr]


def test_a_revoked_key_is_refused_by_a_running_app_within_about_a_second(
    settings: Settings, store: EventStore, pulse: Pulse, clock: FrozenClock
) -> None:
    key, secret = create_key(store, "pos-1", ["ingest"])
    client = create_app(settings, pulse, clock).test_client()
    assert client.post("/v1/events", json={"events": [sale(1)]}, headers=bearer(secret)).status_code == 202

    revoke_key(store, key.id)
    time.sleep(1.1)  # the refresh interval, not a performance assertion

    response = client.post("/v1/events", json={"events": [sale(2)]}, headers=bearer(secret))
    assert response.status_code == 401 and "revoked" in response.get_json()["message"]


def test_a_new_key_works_on_a_running_app_within_about_a_second(
    settings: Settings, store: EventStore, pulse: Pulse, clock: FrozenClock
) -> None:
    client = create_app(settings, pulse, clock).test_client()
    assert client.post("/v1/events", json={"events": [sale(1)]}, headers=bearer("pulse_x_y")).status_code == 401

    _, secret = create_key(store, "late", ["ingest"])
    time.sleep(1.1)

    assert client.post("/v1/events", json={"events": [sale(1)]}, headers=bearer(secret)).status_code == 202
