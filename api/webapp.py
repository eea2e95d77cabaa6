"""The browser web app, served by Pulse itself: no separate server, no build step.

Every page (``/``, ``/d/<slug>``, ``/new``, ``/edit/<slug>``, ``/ops``) is the same HTML
shell; the ES modules under ``api/static/app/`` route on ``location.pathname`` and talk to
``/graphql`` only. Third-party code is vendored from npm under ``api/static/vendor/``
(see its README-webapp.md) and served from here, so the pages run offline and under a
strict Content-Security-Policy: nothing but this origin may run scripts, load styles or
open connections. Images alone may come from elsewhere (``https:``): an IMAGE widget's URL
is the editor's choice and an image cannot run code.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, jsonify, send_from_directory

from api.context import current_pulse

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
APP_DIR = STATIC / "app"
VENDOR_DIR = STATIC / "vendor"
#: Only what the app needs; GraphiQL's page (inline scripts) is served without it. With an OIDC
#: issuer configured, the browser also posts to the issuer's token endpoint (``connect-src``).
CSP = (
    "default-src 'self'; img-src 'self' data: https:; object-src 'none'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'"
)
#: A failed discovery is retried after this long (a working one is kept for the process's life).
DISCOVERY_RETRY_SECONDS = 30.0
#: The folders of vendor/ the app may load (GraphiQL's has its own route, /static/graphiql/).
VENDORED = ("chart.js", "graphql-sse")

webapp = Blueprint("webapp", __name__)


class Discovery:
    """The issuer's OpenID configuration (its authorization and token endpoints), fetched once."""

    def __init__(self) -> None:
        self._found: dict[str, dict[str, Any]] = {}
        self._failed: dict[str, float] = {}
        self._lock = threading.Lock()

    def endpoints(self, issuer: str) -> dict[str, Any] | None:
        with self._lock:
            if issuer in self._found:
                return self._found[issuer]
            if time.monotonic() - self._failed.get(issuer, -DISCOVERY_RETRY_SECONDS) < DISCOVERY_RETRY_SECONDS:
                return None
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                document = json.loads(answer.read())
            found = {"authorization": document["authorization_endpoint"], "token": document["token_endpoint"]}
        except (OSError, ValueError, KeyError) as exc:
            log.warning("OIDC discovery at %s failed (%s): the web app offers API keys only for now", url, exc)
            with self._lock:
                self._failed[issuer] = time.monotonic()
            return None
        with self._lock:
            self._found[issuer] = found
        return found


discovery = Discovery()


def oidc_config() -> dict[str, Any] | None:
    """What the app needs for the Hosted UI sign-in (authorization code + PKCE), or None."""
    settings = current_pulse().settings
    if not settings.oidc_issuer or not settings.oidc_client_id:
        return None
    endpoints = discovery.endpoints(settings.oidc_issuer)
    if endpoints is None:
        return None
    return {
        "issuer": settings.oidc_issuer,
        "clientId": settings.oidc_client_id,
        "authorizationEndpoint": endpoints["authorization"],
        "tokenEndpoint": endpoints["token"],
        "scope": "openid email profile",
    }


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@webapp.after_request
def strict_headers(response: Response) -> Response:
    oidc = oidc_config()
    csp = CSP if oidc is None else f"{CSP}; connect-src 'self' {_origin(oidc['tokenEndpoint'])}"
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _shell() -> Response:
    response = send_from_directory(APP_DIR, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@webapp.get("/")
def home() -> Response:
    return _shell()


@webapp.get("/d/<slug>")
def dashboard_page(slug: str) -> Response:
    return _shell()


@webapp.get("/new")
def new_page() -> Response:
    return _shell()


@webapp.get("/edit/<slug>")
def edit_page(slug: str) -> Response:
    return _shell()


@webapp.get("/ops")
def ops_page() -> Response:
    return _shell()


@webapp.get("/app/<path:name>")
def app_file(name: str) -> Response:
    response = send_from_directory(APP_DIR, name, max_age=0)
    response.headers["Cache-Control"] = "no-cache"  # revalidated (ETag): an upgrade shows at once
    return response


@webapp.get("/vendor/<package>/<path:name>")
def vendor_file(package: str, name: str) -> Response:
    if package not in VENDORED:
        abort(404)
    return send_from_directory(VENDOR_DIR / package, name, max_age=86400)


@webapp.get("/config.json")
def config() -> Response:
    """Whether the app may offer "Sign in with …" (an OIDC issuer is configured and answers)."""
    return jsonify(oidc=oidc_config())
