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

from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory

STATIC = Path(__file__).resolve().parent / "static"
APP_DIR = STATIC / "app"
VENDOR_DIR = STATIC / "vendor"
#: Only what the app needs; GraphiQL's page (inline scripts) is served without it.
CSP = (
    "default-src 'self'; img-src 'self' data: https:; object-src 'none'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'"
)
#: The folders of vendor/ the app may load (GraphiQL's has its own route, /static/graphiql/).
VENDORED = ("chart.js", "graphql-sse")

webapp = Blueprint("webapp", __name__)


@webapp.after_request
def strict_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
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
