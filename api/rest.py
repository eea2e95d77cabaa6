"""REST endpoints under /v1 (described in openapi/openapi.yaml)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from api.context import current_pulse
from api.health import health_report

v1 = Blueprint("v1", __name__, url_prefix="/v1")


@v1.get("/health")
def health():
    report, healthy = health_report(current_pulse())
    return jsonify(report), 200 if healthy else 503
