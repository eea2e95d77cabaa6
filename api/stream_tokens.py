"""Short-lived stream tokens: how a browser's ``EventSource``, which cannot send headers,
authenticates a subscription (``GET /graphql?query=...&token=...``).

``createStreamToken`` (read scope) issues a JWT (HS256, PyJWT) naming the caller's key
id, granting ``read`` only, valid ``TTL_SECONDS``. It is checked when a stream opens;
``api.auth`` then also requires the key to exist and not be revoked, so revoking a key
stops its tokens within about a second (the key cache's refresh). The signing secret is
``PULSE_TOKEN_SECRET`` or, unset, the store's (``domain.token_secret``), shared by every
process and machine on that store.
"""

from __future__ import annotations

from datetime import UTC, datetime

import jwt

from api.context import Pulse
from domain.errors import PulseError
from domain.token_secret import load_or_create_secret

TTL_SECONDS = 300
AUDIENCE = "pulse:stream"
SCOPE = "read"
_ALGORITHM = "HS256"


class InvalidStreamToken(PulseError):
    """A stream token that is malformed, forged, for another use or expired."""


def signing_secret(pulse: Pulse) -> bytes:
    if pulse.settings.token_secret:
        return pulse.settings.token_secret.encode()
    return pulse.cached("stream-token-secret", lambda: load_or_create_secret(pulse.store))


def issue(pulse: Pulse, key_id: str | None, now: float | None = None) -> tuple[str, datetime]:
    """A read-only stream token for ``key_id`` and when it expires."""
    issued = int(pulse.clock.now() if now is None else now)
    expires = issued + TTL_SECONDS
    claims = {"sub": key_id or "", "scope": SCOPE, "aud": AUDIENCE, "iat": issued, "exp": expires}
    token = jwt.encode(claims, signing_secret(pulse), algorithm=_ALGORITHM)
    return token, datetime.fromtimestamp(expires, UTC)


def verify(pulse: Pulse, token: str) -> tuple[str, str]:
    """``(key id, scope)`` of a valid token; raises ``InvalidStreamToken``."""
    try:
        claims = jwt.decode(
            token,
            signing_secret(pulse),
            algorithms=[_ALGORITHM],
            audience=AUDIENCE,
            # PyJWT would check exp and iat by the system clock: checked below by the app's.
            options={"require": ["sub", "scope", "aud", "exp"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidTokenError as exc:
        raise InvalidStreamToken(f"invalid stream token ({exc}): ask createStreamToken for one") from exc
    now, expires, issued = pulse.clock.now(), claims["exp"], claims.get("iat", 0)
    if any(isinstance(t, bool) or not isinstance(t, int | float) for t in (expires, issued)):
        raise InvalidStreamToken("invalid stream token (exp and iat must be numbers): ask createStreamToken for one")
    if expires <= now:
        raise InvalidStreamToken("the stream token expired: ask createStreamToken for a new one")
    if issued > now:
        raise InvalidStreamToken("invalid stream token (issued in the future): ask createStreamToken for one")
    if claims["scope"] != SCOPE or not isinstance(claims["sub"], str):
        raise InvalidStreamToken("invalid stream token: not a read token")
    return claims["sub"], claims["scope"]
