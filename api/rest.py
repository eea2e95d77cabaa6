"""REST endpoints under /v1 (described in openapi/openapi.yaml)."""

from __future__ import annotations

import os

from flask import Blueprint, current_app, jsonify

from api.auth import requires_scope
from api.context import current_pulse
from api.graphql_live import live_watcher
from api.health import health_report

v1 = Blueprint("v1", __name__, url_prefix="/v1")


@v1.get("/health")
def health():
    report, healthy = health_report(current_pulse())
    return jsonify(report), 200 if healthy else 503


@v1.get("/live")
@requires_scope("read")
def live():
    """This process's subscription streams and change watcher (see api/live.py)."""
    slots = current_app.extensions["pulse.stream_slots"]
    return jsonify(
        pid=os.getpid(),
        streams={"open": slots.open, "limit": slots.limit},
        watcher=live_watcher(current_pulse()).stats().as_dict(),
    )
