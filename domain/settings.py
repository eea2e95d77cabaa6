"""Pulse's settings, read from ``PULSE_*`` environment variables.

The defaults are the single-machine setup: a SQLite file in the working directory, auth
on, UTC. Command-line options override the same fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from domain.keys import SCOPES

#: The backends an operator chooses from (`pulse --store`).
STORES = ("sqlite", "dynamodb")
#: Backends only tests use: "memory" is the in-memory fake of every port
#: (``bootstrap.memory``); nothing it holds outlives the process. Not for production, so
#: not offered by the command line.
TEST_STORES = ("memory",)
INTROSPECTION_MODES = ("auto", "on", "off")
#: `PULSE_ARCHIVE`: "auto" archives when pyarrow is installed (the `archive` extra).
ARCHIVE_MODES = ("auto", "on", "off")
#: `PULSE_METRICS_ACCESS`: who may scrape GET /metrics (README "Operating Pulse").
METRICS_ACCESS_MODES = ("local", "key", "open")
LOG_FORMATS = ("text", "json")


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected on/off, true/false, yes/no or 1/0, got {text!r}")


def _list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class Settings:
    store: str = "sqlite"
    db: str = "pulse.db"
    dynamodb_endpoint: str | None = None
    region: str = "us-east-1"
    table_prefix: str = "pulse"
    auth: bool = True
    cors_origins: tuple[str, ...] = ("*",)
    timezone: str = "UTC"
    max_future_seconds: int = 300
    # Subscription streams each hold a server thread; see the README on sizing.
    max_streams: int = 32
    heartbeat_seconds: float = 5.0
    # How often each server process reads the views' change markers while anyone subscribes.
    live_interval_seconds: float = 0.1
    # Signs stream tokens (?token= for EventSource); unset: one secret kept in the event store.
    token_secret: str | None = None
    # How far back occurredAt may be, in days (0: no bound beyond year 1).
    max_past_days: int = 3660
    # Introspection (__schema, __type) and so GraphiQL's docs: on, off, or auto (callers
    # with the read scope). See api/graphql_limits.py for the limits below.
    introspection: str = "auto"
    # What one GraphQL request may ask for; a 30-chart dashboard uses a fraction of each.
    max_query_fields: int = 2000
    max_query_depth: int = 12
    max_query_points: int = 100_000
    max_list_items: int = 1000
    # The Parquet archive of every fact (services/archive.py, README "Archive"): a folder
    # beside the db (default "<db stem>.archive") or, when a bucket is set, S3.
    archive: str = "auto"
    archive_dir: str | None = None
    archive_bucket: str | None = None
    archive_prefix: str = ""
    archive_endpoint: str | None = None
    # Typed columns beside the properties' JSON, e.g. "amount:double,category:string".
    archive_columns: str = ""
    archive_max_bytes: int = 64 * 2**20
    archive_max_age_seconds: float = 300.0
    # Sign-in tokens (JWT, RS256) from Amazon Cognito or any OIDC issuer, beside API keys
    # (services/oidc.py, README "Access"): off while no issuer is set.
    oidc_issuer: str | None = None
    # The app client: an ID token's `aud`, an access token's `client_id`.
    oidc_client_id: str | None = None
    # Unset: "<issuer>/.well-known/jwks.json" (Cognito's and most issuers' address).
    oidc_jwks_url: str | None = None
    oidc_groups_claim: str = "cognito:groups"
    # Group -> Pulse scopes, "group:scope[+scope],...".
    oidc_roles: str = "viewer:read,editor:editor,admin:admin"
    # Failed tries of a batch before a projection parks the event(s) it cannot apply
    # (0: park on the first failure), and the first backoff (doubling up to a minute).
    projection_retries: int = 5
    projection_retry_seconds: float = 1.0
    # GET /metrics: "local" (from 127.0.0.1/::1 without a key), "key" (read or admin), "open".
    metrics_access: str = "local"
    # "json": one JSON object per log line, with the request id (README "Operating Pulse").
    log_format: str = "text"
    # Requests one keep-alive connection may carry before the server answers
    # "Connection: close" (nginx's keepalive_requests); the client reconnects and whichever
    # gunicorn worker is free accepts, so a few long-lived connections cannot all stay on one
    # worker (one GIL). 0: no cap. See api/keepalive.py.
    keepalive_requests: int = 100

    def __post_init__(self) -> None:
        if self.store not in STORES + TEST_STORES:
            raise ValueError(f"PULSE_STORE must be one of {', '.join(STORES)}, got {self.store!r}")
        if not 0 < self.live_interval_seconds <= 10:
            raise ValueError(f"PULSE_LIVE_INTERVAL_SECONDS must be in (0, 10], got {self.live_interval_seconds}")
        if self.introspection not in INTROSPECTION_MODES:
            raise ValueError(
                f"PULSE_INTROSPECTION must be one of {', '.join(INTROSPECTION_MODES)}, got {self.introspection!r}"
            )
        for name in ("max_past_days", "max_query_fields", "max_query_depth", "max_query_points", "max_list_items"):
            if getattr(self, name) < 0 or (name != "max_past_days" and getattr(self, name) == 0):
                raise ValueError(
                    f"PULSE_{name.upper()} must be {'0 or more' if name == 'max_past_days' else 'at least 1'}"
                )
        if self.archive not in ARCHIVE_MODES:
            raise ValueError(f"PULSE_ARCHIVE must be one of {', '.join(ARCHIVE_MODES)}, got {self.archive!r}")
        if self.archive_max_bytes < 0 or self.archive_max_age_seconds < 0:
            raise ValueError("PULSE_ARCHIVE_MAX_BYTES and PULSE_ARCHIVE_MAX_AGE_SECONDS must be 0 or more")
        for part in filter(None, (p.strip() for p in self.oidc_roles.split(","))):
            group, _, scopes = part.partition(":")
            unknown = [s for s in scopes.split("+") if s.strip() and s.strip() not in SCOPES]
            if not group.strip() or not scopes.strip() or unknown:
                raise ValueError(
                    f"PULSE_OIDC_ROLES: {part!r} must be 'group:scope[+scope]' with scopes among {', '.join(SCOPES)}"
                )
        if self.oidc_issuer and not self.oidc_client_id:
            raise ValueError("PULSE_OIDC_ISSUER needs PULSE_OIDC_CLIENT_ID: the app client tokens must be issued to")
        if self.projection_retries < 0 or self.projection_retry_seconds < 0:
            raise ValueError("PULSE_PROJECTION_RETRIES and PULSE_PROJECTION_RETRY_SECONDS must be 0 or more")
        if self.metrics_access not in METRICS_ACCESS_MODES:
            raise ValueError(
                f"PULSE_METRICS_ACCESS must be one of {', '.join(METRICS_ACCESS_MODES)}, got {self.metrics_access!r}"
            )
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"PULSE_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        if self.max_streams < 0:
            raise ValueError(f"PULSE_MAX_STREAMS must be 0 or more, got {self.max_streams}")
        if self.keepalive_requests < 0:
            raise ValueError(f"PULSE_KEEPALIVE_REQUESTS must be 0 (no cap) or more, got {self.keepalive_requests}")

    @property
    def events_table(self) -> str:
        return f"{self.table_prefix}-events"

    @property
    def views_table(self) -> str:
        return f"{self.table_prefix}-views"

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Settings:
        """Settings from ``PULSE_<FIELD>`` variables, then non-None ``overrides``."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"PULSE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if f.name == "auth":
                values[f.name] = _bool(raw)
            elif f.name == "cors_origins":
                values[f.name] = _list(raw)
            elif isinstance(f.default, int):
                values[f.name] = int(raw)
            elif isinstance(f.default, float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        settings = cls(**values)
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})
