"""Health: is the store reachable, which version runs."""

from __future__ import annotations

from typing import Any

from api.context import VERSION, Pulse
from domain.errors import StoreUnavailable


def health_report(pulse: Pulse) -> tuple[dict[str, Any], bool]:
    """The report and whether Pulse is healthy."""
    report: dict[str, Any] = {"status": "ok", "version": VERSION, "store": pulse.settings.store}
    try:
        pulse.store.ping()
    except StoreUnavailable as exc:
        report.update(status="unavailable", message=str(exc))
        return report, False
    return report, True
