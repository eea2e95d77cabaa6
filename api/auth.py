"""Who is calling: API keys from ``Authorization: Bearer`` or ``X-Api-Key``, or sign-in
tokens (JWTs from Cognito or another OIDC issuer, ``services.oidc``) as bearer tokens when
``PULSE_OIDC_ISSUER`` is set; and scopes.

The key registry is cached per Pulse (``services.keys.KeyCache``) and caught up by
reading the ``api-keys`` stream at most once a second: a new or revoked key takes effect
within about a second, without a store read per request.
The principal is resolved once per request and kept in the WSGI environ, which REST
handlers and GraphQL resolvers of the same request share.

REST handlers use ``@requires_scope("ingest")``; GraphQL resolvers take ``caller(info)``
and hand the principal to a service, which checks the scope (``domain.access.require``).

Browsers' ``EventSource`` cannot send headers: on ``GET /graphql`` only, a short-lived
stream token (``?token=``, see ``api.stream_tokens``) stands for its key with the
``read`` scope, as long as the key is not revoked. Open streams call
``ensure_not_revoked`` so a revoked key's streams end too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Request, request
from graphql import GraphQLError
from strawberry.types import Info

from api import stream_tokens
from api.context import Pulse, current_pulse
from domain.access import OPEN_ACCESS, Forbidden, Principal, Unauthenticated, require
from domain.errors import StoreUnavailable
from domain.keys import SCOPES
from services.keys import KeyCache
from services.oidc import OidcVerifier, looks_like_jwt

_ENVIRON_KEY = "pulse.principal"


def key_cache(pulse: Pulse) -> KeyCache:
    """The one cache of the keys of this Pulse's store."""
    return pulse.cached("keys", lambda: KeyCache(pulse.store))


def oidc_verifier(pulse: Pulse) -> OidcVerifier:
    """The one verifier of sign-in tokens of this Pulse (its JWKS cache lives with it)."""
    return pulse.cached("oidc", lambda: OidcVerifier(pulse.settings, pulse.clock))


def _presented_secret(req: Request) -> str | None:
    header = req.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <api key or sign-in token>'")
        return token.strip()
    key = req.headers.get("X-Api-Key")
    return key.strip() if key and key.strip() else None


def _stream_token(req: Request) -> str | None:
    token = req.args.get("token")
    if token is not None and (req.method != "GET" or req.path != "/graphql"):
        raise Unauthenticated(
            "the token query parameter is accepted only on GET /graphql (EventSource subscriptions);"
            " send the API key as 'Authorization: Bearer <api key>'"
        )
    return token


def _token_principal(pulse: Pulse, token: str) -> Principal:
    try:
        key_id, scope = stream_tokens.verify(pulse, token)
    except stream_tokens.InvalidStreamToken as exc:
        raise Unauthenticated(str(exc)) from exc
    key = key_cache(pulse).registry().keys.get(key_id)
    if key is None:
        raise Unauthenticated("the stream token names no known API key")
    if key.revoked:
        raise Unauthenticated(f"API key {key.id} ({key.name}) was revoked; its stream tokens no longer work")
    return Principal(key_id=key.id, name=key.name, scopes=frozenset({scope}))


def _resolve(req: Request, pulse: Pulse) -> Principal:
    if not pulse.settings.auth:
        return OPEN_ACCESS
    secret = _presented_secret(req)
    if secret is None:
        token = _stream_token(req)
        if token is not None:
            return _token_principal(pulse, token)
        raise Unauthenticated("missing API key: send 'Authorization: Bearer <api key>' or 'X-Api-Key: <api key>'")
    if pulse.settings.oidc_issuer and looks_like_jwt(secret):
        return oidc_verifier(pulse).principal(secret)
    key = key_cache(pulse).registry().authenticate(secret)
    if key is None:
        raise Unauthenticated("unknown API key")
    if key.revoked:
        raise Unauthenticated(f"API key {key.id} ({key.name}) was revoked")
    return Principal(key_id=key.id, name=key.name, scopes=key.scopes)


def principal_of(req: Request, pulse: Pulse) -> Principal:
    """The request's principal, resolved once per request; raises ``Unauthenticated``."""
    found = req.environ.get(_ENVIRON_KEY)
    if isinstance(found, Unauthenticated):
        raise found
    if found is None:
        try:
            found = _resolve(req, pulse)
        except Unauthenticated as exc:
            req.environ[_ENVIRON_KEY] = exc
            raise
        req.environ[_ENVIRON_KEY] = found
    return found


def ensure_not_revoked(pulse: Pulse, principal: Principal) -> None:
    """For long-lived streams: raises ``Unauthenticated`` once the caller's key is revoked."""
    if principal.key_id is None:
        return
    key = key_cache(pulse).registry().keys.get(principal.key_id)
    if key is None or key.revoked:
        raise Unauthenticated(f"API key {principal.key_id} ({principal.name}) was revoked")


def authorize(req: Request, pulse: Pulse, scope: str) -> Principal:
    """The principal if it may use ``scope``; raises ``Unauthenticated`` or ``Forbidden``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return require(principal_of(req, pulse), scope)


F = TypeVar("F", bound=Callable[..., Any])


def requires_scope(scope: str) -> Callable[[F], F]:
    """Decorates a Flask view: 401/403 unless the caller's key has ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; scopes are {', '.join(SCOPES)}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authorize(request, current_pulse(), scope)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def caller(info: Info) -> tuple[Pulse, Principal]:
    """For GraphQL resolvers: the app's Pulse and the authenticated caller (the service it
    calls checks the scope), or a GraphQL error coded UNAUTHENTICATED."""
    pulse = info.context["pulse"]
    try:
        return pulse, principal_of(info.context["request"], pulse)
    except Unauthenticated as exc:
        raise GraphQLError(str(exc), extensions={"code": "UNAUTHENTICATED"}) from exc
    except StoreUnavailable as exc:  # the sign-in issuer's keys out of reach
        raise GraphQLError(f"retry shortly: {exc}", extensions={"code": "UNAVAILABLE"}) from exc


def require_scope(info: Info, scope: str) -> Principal:
    """For GraphQL resolvers: the principal, or a GraphQL error coded UNAUTHENTICATED/FORBIDDEN."""
    try:
        return authorize(info.context["request"], info.context["pulse"], scope)
    except Unauthenticated as exc:
        raise GraphQLError(str(exc), extensions={"code": "UNAUTHENTICATED"}) from exc
    except Forbidden as exc:
        raise GraphQLError(str(exc), extensions={"code": "FORBIDDEN"}) from exc
    except StoreUnavailable as exc:
        raise GraphQLError(f"retry shortly: {exc}", extensions={"code": "UNAVAILABLE"}) from exc


__all__ = [
    "OPEN_ACCESS",
    "Forbidden",
    "Principal",
    "Unauthenticated",
    "authorize",
    "caller",
    "ensure_not_revoked",
    "key_cache",
    "principal_of",
    "require_scope",
    "requires_scope",
]
