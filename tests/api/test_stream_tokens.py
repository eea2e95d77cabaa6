"""Stream tokens: one signing secret per store whoever creates it (first writer wins, on
both backends), or PULSE_TOKEN_SECRET; tokens expire, cannot be forged or reused for
another purpose."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import jwt
import pytest

from api import stream_tokens
from bootstrap import Pulse, bootstrap
from domain.clock import FrozenClock, now_utc
from domain.ports import EventStore
from domain.settings import Settings
from domain.token_secret import TOKEN_SECRET_STREAM, load_or_create_secret
from tests.support import at_awkward_instants, in_threads


def test_processes_racing_to_create_the_secret_all_get_the_first_writers(settings: Settings, store: EventStore) -> None:
    others = [bootstrap(settings).store for _ in range(4)]  # as other processes would
    found: list[bytes] = []
    barrier = threading.Barrier(len(others))

    def race(each: EventStore) -> None:
        barrier.wait()
        found.append(load_or_create_secret(each))

    in_threads(race, others)
    for each in others:
        each.close()
    assert len(found) == 4 and len(set(found)) == 1 and len(found[0]) >= 32
    assert len(store.read_stream(TOKEN_SECRET_STREAM)) == 1  # created once
    assert load_or_create_secret(store) == found[0]


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
@at_awkward_instants
def test_tokens_verify_until_they_expire_by_the_apps_clock_and_only_with_the_secret(
    settings: Settings, pulse: Pulse, clock: FrozenClock
) -> None:
    pulse = pulse.with_settings(settings, clock)
    token, expires = stream_tokens.issue(pulse, "0123456789abcdef")
    assert expires == now_utc(clock).replace(microsecond=0) + timedelta(seconds=stream_tokens.TTL_SECONDS)
    assert stream_tokens.verify(pulse, token) == ("0123456789abcdef", "read")
    clock.set(expires - timedelta(microseconds=1))
    assert stream_tokens.verify(pulse, token) == ("0123456789abcdef", "read")
    clock.set(expires)
    with pytest.raises(stream_tokens.InvalidStreamToken, match="expired"):
        stream_tokens.verify(pulse, token)

    now = clock.now()
    secret = stream_tokens.signing_secret(pulse)
    for forged in (
        jwt.encode({"sub": "k", "scope": "read", "aud": "pulse:stream", "exp": now + 60}, b"guess" * 8),
        jwt.encode({"sub": "k", "scope": "admin", "aud": "pulse:stream", "exp": now + 60}, secret),
        jwt.encode({"sub": "k", "scope": "read", "aud": "elsewhere", "exp": now + 60}, secret),
        jwt.encode({"sub": "k", "scope": "read", "aud": "pulse:stream"}, secret),  # no expiry
        jwt.encode({"sub": "k", "scope": "read", "aud": "pulse:stream", "exp": "later"}, secret),
        jwt.encode({"sub": "k", "scope": "read", "aud": "pulse:stream", "exp": now + 60, "iat": now + 1}, secret),
        token[:-2],
    ):
        with pytest.raises(stream_tokens.InvalidStreamToken):
            stream_tokens.verify(pulse, forged)

    # PULSE_TOKEN_SECRET wins over the stored secret: tokens of one do not verify with the other.
    configured = pulse.with_settings(replace(settings, token_secret="s" * 40))
    with pytest.raises(stream_tokens.InvalidStreamToken):
        stream_tokens.verify(configured, token)
    assert stream_tokens.verify(configured, stream_tokens.issue(configured, "k")[0]) == ("k", "read")
