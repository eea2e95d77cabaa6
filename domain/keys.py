"""API keys as an event-sourced aggregate: the stream ``api-keys`` in the event store.

Events: ``key_created`` (key id, name, scopes, sha256 of the secret) and ``key_revoked``.
The registry is the fold of that stream; commands check the registry and append with
the version they read, retrying when another writer got there first.

Only the SHA-256 of a secret is stored. A plain hash (no salt, no slow KDF) is enough
because secrets are 256 random bits, not passwords: there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from domain.aggregate import decide_and_append
from domain.errors import FieldError, NotFound, ValidationError
from domain.events import Event, RecordedEvent, utc_now
from domain.ports import EventStore

KEYS_STREAM = "api-keys"
SCOPES = ("ingest", "read", "editor", "admin")
#: What a scope grants beyond itself: ``admin`` everything, ``editor`` (dashboards, alert
#: rules) also ``read``.
IMPLIED = {"editor": frozenset({"read"})}
SECRET_PREFIX = "pulse_"
KEY_CREATED = "key_created"
KEY_REVOKED = "key_revoked"
MAX_NAME_LENGTH = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")
# A key id never contains "_", so "pulse_<id>_<random>" splits unambiguously.
_KEY_ID = re.compile(r"[0-9a-f]{16}")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def scopes_allow(scopes: frozenset[str], scope: str) -> bool:
    """``admin`` implies every scope, ``editor`` implies ``read``."""
    return "admin" in scopes or scope in scopes or any(scope in IMPLIED.get(held, ()) for held in scopes)


def key_id_of(secret: str) -> str | None:
    """The key id a secret names, or None when it is not shaped like a Pulse secret."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    key_id, sep, _ = secret[len(SECRET_PREFIX) :].partition("_")
    return key_id if sep and _KEY_ID.fullmatch(key_id) else None


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    scopes: frozenset[str]
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def allows(self, scope: str) -> bool:
        return scopes_allow(self.scopes, scope)

    def matches(self, secret: str) -> bool:
        # Constant-time compare so response timing does not leak how much of a hash matched.
        return hmac.compare_digest(self.secret_hash, hash_secret(secret))


@dataclass
class KeyRegistry:
    """The fold of the ``api-keys`` stream; ``version`` is the last event applied."""

    keys: dict[str, ApiKey] = field(default_factory=dict)
    version: int = 0

    def apply(self, events: Iterable[RecordedEvent]) -> None:
        for recorded in events:
            props = recorded.properties
            if recorded.type == KEY_CREATED:
                self.keys[props["keyId"]] = ApiKey(
                    id=props["keyId"],
                    name=props["name"],
                    scopes=frozenset(props["scopes"]),
                    secret_hash=props["secretHash"],
                    created_at=recorded.occurred_at,
                )
            elif recorded.type == KEY_REVOKED:
                key = self.keys[props["keyId"]]
                self.keys[key.id] = replace(key, revoked_at=recorded.occurred_at)
            self.version = recorded.version or self.version

    def by_name(self, name: str) -> ApiKey | None:
        return next((key for key in self.keys.values() if key.name == name), None)

    def authenticate(self, secret: str) -> ApiKey | None:
        """The key this secret belongs to (revoked or not), or None."""
        key_id = key_id_of(secret)
        key = self.keys.get(key_id) if key_id else None
        return key if key is not None and key.matches(secret) else None


def load_registry(store: EventStore) -> KeyRegistry:
    registry = KeyRegistry()
    registry.apply(store.read_stream(KEYS_STREAM))
    return registry


def _check_new_key(registry: KeyRegistry, name: str, scopes: Iterable[str]) -> frozenset[str]:
    errors = []
    if not _NAME.fullmatch(name):
        errors.append(
            FieldError(
                field="name",
                message=(
                    f"{name!r} is not a valid key name: 1 to {MAX_NAME_LENGTH} characters, letters, digits"
                    " and _ . : @ -, starting with a letter or digit"
                ),
            )
        )
    elif registry.by_name(name) is not None:
        errors.append(FieldError(field="name", message=f"an API key named {name!r} already exists"))
    scope_set = frozenset(scopes)
    unknown = sorted(scope_set - set(SCOPES))
    if unknown:
        errors.append(
            FieldError(field="scope", message=f"unknown scope {', '.join(unknown)}; choose from {', '.join(SCOPES)}")
        )
    elif not scope_set:
        errors.append(FieldError(field="scope", message=f"give at least one scope: {', '.join(SCOPES)}"))
    if errors:
        raise ValidationError(errors)
    return scope_set


def create_key(store: EventStore, name: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
    """Create a key; returns it and its secret, which is not kept anywhere."""

    def decide(registry: KeyRegistry):
        scope_set = _check_new_key(registry, name, scopes)
        key_id = secrets.token_hex(8)
        secret = f"{SECRET_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = utc_now()
        key = ApiKey(id=key_id, name=name, scopes=scope_set, secret_hash=hash_secret(secret), created_at=now)
        event = Event(
            type=KEY_CREATED,
            occurred_at=now,
            properties={"keyId": key_id, "name": name, "scopes": sorted(scope_set), "secretHash": key.secret_hash},
        )
        return [event], lambda _version: (key, secret)

    return decide_and_append(store, KEYS_STREAM, load_registry, decide)


def revoke_key(store: EventStore, key_id: str) -> ApiKey:
    """Revoke a key for good; returns it as revoked."""

    def decide(registry: KeyRegistry):
        key = registry.keys.get(key_id)
        if key is None:
            raise NotFound(f"no API key with id {key_id!r}; `pulse keys list` shows the ids")
        if key.revoked:
            when = f"{key.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
            message = f"API key {key_id!r} was already revoked at {when}"
            raise ValidationError([FieldError(field="keyId", message=message)])
        now = utc_now()
        event = Event(type=KEY_REVOKED, occurred_at=now, properties={"keyId": key_id})
        return [event], lambda _version: replace(key, revoked_at=now)

    return decide_and_append(store, KEYS_STREAM, load_registry, decide)
