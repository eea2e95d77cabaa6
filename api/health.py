"""Health: is the store reachable, which version runs; and the probes load balancers and
Kubernetes expect (``/healthz`` liveness, ``/readyz`` readiness)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from api.context import VERSION, Pulse, current_pulse
from domain.errors import StoreUnavailable

# Seconds a load balancer should wait before probing /readyz again after a 503.
READY_RETRY_AFTER = "5"


def health_report(pulse: Pulse) -> tuple[dict[str, Any], bool]:
    """The report and whether Pulse is healthy."""
    report: dict[str, Any] = {"status": "ok", "version": VERSION, "store": pulse.settings.store}
    try:
        pulse.store.ping()
    except StoreUnavailable as exc:
        report.update(status="unavailable", message=str(exc))
        return report, False
    return report, True


probes = Blueprint("probes", __name__)


@probes.get("/healthz")
def healthz():
    """Liveness: the process answers HTTP. Never touches the store, so a store outage does
    not get every instance restarted."""
    return jsonify(status="ok")


@probes.get("/readyz")
def readyz():
    """Readiness: the store answers ``ping()``; otherwise 503 so traffic goes elsewhere."""
    try:
        current_pulse().store.ping()
    except StoreUnavailable as exc:
        return jsonify(status="unavailable", message=str(exc)), 503, {"Retry-After": READY_RETRY_AFTER}
    return jsonify(status="ok")
