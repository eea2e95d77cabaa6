"""API keys as the API and the CLI use them: create, list, revoke, and the process's
cache of the registry that authenticates requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from domain import keys as aggregate
from domain.keys import KEYS_STREAM, ApiKey, KeyRegistry
from domain.ports import EventStore

#: How stale the cached registry may be: a new or revoked key takes effect within this.
REFRESH_SECONDS = 1.0


class KeyCache:
    """The key registry of one store, refreshed from the stream at most every ``refresh_seconds``."""

    def __init__(
        self,
        store: EventStore,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._registry = KeyRegistry()
        self._checked_at: float | None = None
        self._lock = threading.Lock()

    def registry(self) -> KeyRegistry:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._refresh_seconds:
            with self._lock:
                # Another thread may have refreshed while this one waited for the lock.
                if self._checked_at is None or now - self._checked_at >= self._refresh_seconds:
                    self._registry.apply(self._store.read_stream(KEYS_STREAM, after_version=self._registry.version))
                    self._checked_at = now
        return self._registry


def create(store: EventStore, name: str, scopes: Sequence[str]) -> tuple[ApiKey, str]:
    """A new key and its secret (shown once)."""
    return aggregate.create_key(store, name, scopes)


def listed(store: EventStore) -> list[ApiKey]:
    """Every key, oldest first (never their secrets)."""
    return sorted(aggregate.load_registry(store).keys.values(), key=lambda key: key.created_at)


def revoke(store: EventStore, key_id: str) -> ApiKey:
    return aggregate.revoke_key(store, key_id)
