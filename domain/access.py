"""Who may do what: the caller of a request and the scopes its key grants.

Services take the caller (a ``Principal``) and check the scope themselves
(``require``), so every entry point (GraphQL, REST, a stream) gets the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import PulseError
from domain.keys import scopes_allow


class Unauthenticated(PulseError):
    """No usable API key: missing, unknown or revoked (HTTP 401)."""

    challenge = 'Bearer realm="pulse"'


class Forbidden(PulseError):
    """The key is valid but lacks the scope (HTTP 403)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request. ``key_id`` is None when auth is off."""

    key_id: str | None
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scopes_allow(self.scopes, scope)

    @property
    def who(self) -> str:
        """How messages and the audit log name the caller: the key, or the signed-in user."""
        return f"API key {self.key_id} ({self.name})" if self.key_id else self.name


#: Every caller when auth is off.
OPEN_ACCESS = Principal(key_id=None, name="anyone (auth is off)", scopes=frozenset({"admin"}))


def require(principal: Principal, scope: str) -> Principal:
    """``principal`` if it may use ``scope``; raises ``Forbidden`` naming what it has."""
    if not principal.allows(scope):
        raise Forbidden(
            f"{principal.who} lacks the {scope!r} scope; it has {', '.join(sorted(principal.scopes)) or 'none'}"
        )
    return principal
