"""Sign-in tokens: JWTs from Amazon Cognito (or any OIDC issuer) as callers, beside API keys.

A token is accepted when all of these hold, else the caller is ``Unauthenticated`` with
the reason:

- its header names ``RS256`` (never ``none``, never an HMAC: a public key used as an HMAC
  secret would let anyone sign) and a ``kid`` among the issuer's keys (its JWKS, fetched
  with PyJWT's ``PyJWKClient`` and cached; an unknown ``kid`` refetches the set at most
  once a minute, so the issuer's key rotation is picked up and a flood of made-up ``kid``s
  costs one fetch a minute; the whole set is refetched hourly, so a withdrawn key stops);
- the signature verifies; ``iss`` is the configured issuer; ``exp`` (and ``nbf``/``iat``
  when present) hold at ``Pulse.clock``'s now, with 30 s of leeway for clock skew;
- Cognito's ``token_use`` is ``id`` (then ``aud`` is the app client) or ``access`` (then
  ``client_id`` is); a token without ``token_use`` (other issuers) must have the app
  client in ``aud``.

The caller's scopes are the union of its groups' roles (``PULSE_OIDC_ROLES``, groups from
``PULSE_OIDC_GROUPS_CLAIM``); a signed-in user in no mapped group is authenticated with
no scope, so every request of theirs is a 403 naming what they lack.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import jwt

from domain.access import Principal, Unauthenticated
from domain.clock import Clock
from domain.errors import StoreUnavailable
from domain.settings import Settings

ALGORITHM = "RS256"
LEEWAY_SECONDS = 30
#: An unknown ``kid`` refetches the JWKS at most this often.
REFETCH_SECONDS = 60.0
#: Known keys are refetched this often too, so a key the issuer withdrew stops working.
KEYS_MAX_AGE_SECONDS = 3600.0


def parse_roles(text: str) -> dict[str, frozenset[str]]:
    """``"viewer:read,editor:editor,ops:read+admin"`` → group → scopes."""
    roles: dict[str, frozenset[str]] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        group, sep, scopes = part.partition(":")
        if not sep or not group.strip() or not scopes.strip():
            raise ValueError(f"PULSE_OIDC_ROLES: {part.strip()!r} is not 'group:scope[+scope]'")
        roles[group.strip()] = frozenset(scope.strip() for scope in scopes.split("+") if scope.strip())
    return roles


def looks_like_jwt(secret: str) -> bool:
    """A JWT is three base64url parts; an API key (``pulse_<id>_<random>``) has no dot."""
    return secret.count(".") == 2


class OidcVerifier:
    """Turns a sign-in token into a ``Principal``; see the module docstring."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        if not settings.oidc_issuer or not settings.oidc_client_id:
            raise ValueError("OIDC needs PULSE_OIDC_ISSUER and PULSE_OIDC_CLIENT_ID")
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self.groups_claim = settings.oidc_groups_claim
        self.roles = parse_roles(settings.oidc_roles)
        self.clock = clock
        url = settings.oidc_jwks_url or f"{self.issuer}/.well-known/jwks.json"
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, cache_keys=False, timeout=5)
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def _key(self, kid: str) -> Any:
        age = time.monotonic() - self._fetched_at
        key = self._keys.get(kid)
        if key is not None and age < KEYS_MAX_AGE_SECONDS:
            return key
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if age >= KEYS_MAX_AGE_SECONDS or (kid not in self._keys and age >= REFETCH_SECONDS):
                self._refetch()
        key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated(f"the token's key id {kid!r} is not among the issuer's signing keys")
        return key

    def _refetch(self) -> None:
        try:
            keys = self._client.get_signing_keys(refresh=True)
        except jwt.PyJWKClientConnectionError as exc:
            # The issuer is out of reach: our fault to fix, not the caller's (503).
            raise StoreUnavailable(f"cannot fetch the sign-in keys of {self.issuer}: {exc}") from exc
        except jwt.PyJWKClientError as exc:
            raise StoreUnavailable(f"the sign-in keys of {self.issuer} are unusable: {exc}") from exc
        self._keys = {key.key_id: key.key for key in keys if key.key_id}
        self._fetched_at = time.monotonic()

    def principal(self, token: str) -> Principal:
        """The caller a valid token stands for; raises ``Unauthenticated`` naming why not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"malformed sign-in token: {exc}") from exc
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated(f"sign-in tokens must be signed with {ALGORITHM}, not {header.get('alg')!r}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("the sign-in token names no key id (kid)")
        try:
            claims = jwt.decode(
                token,
                self._key(kid),
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                # Times are checked below against Pulse's clock, not the system's.
                options={
                    "require": ["iss", "exp", "sub"],
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid sign-in token: {exc}") from exc
        self._check_times(claims)
        self._check_client(claims)
        return Principal(key_id=None, name=_who(claims), scopes=self._scopes(claims))

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self.clock.now()
        times = {name: claims.get(name) for name in ("exp", "nbf", "iat")}
        for name, value in times.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise Unauthenticated(f"invalid sign-in token: {name} must be a number")
        if times["exp"] <= now - LEEWAY_SECONDS:
            raise Unauthenticated("the sign-in token expired: sign in again")
        if times["nbf"] is not None and times["nbf"] > now + LEEWAY_SECONDS:
            raise Unauthenticated("the sign-in token is not valid yet (nbf)")
        if times["iat"] is not None and times["iat"] > now + LEEWAY_SECONDS:
            raise Unauthenticated("invalid sign-in token: issued in the future (iat)")

    def _check_client(self, claims: Mapping[str, Any]) -> None:
        use = claims.get("token_use")
        if use == "access":
            if claims.get("client_id") != self.client_id:
                raise Unauthenticated("the access token was issued to another app client (client_id)")
            return
        if use not in (None, "id"):
            raise Unauthenticated(f"sign-in tokens must be ID or access tokens, not token_use {use!r}")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.client_id not in audiences:
            raise Unauthenticated("the ID token was issued to another app client (aud)")

    def _scopes(self, claims: Mapping[str, Any]) -> frozenset[str]:
        groups = claims.get(self.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        scopes: set[str] = set()
        for group in groups if isinstance(groups, list) else []:
            scopes |= self.roles.get(group, frozenset())
        return frozenset(scopes)


def _who(claims: Mapping[str, Any]) -> str:
    """What the audit log says of a signed-in user: their name or email, and subject."""
    name = claims.get("email") or claims.get("cognito:username") or claims.get("username")
    return f"{name} (user {claims['sub']})" if isinstance(name, str) and name else f"user {claims['sub']}"
