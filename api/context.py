"""What a request handler needs: the running Pulse that ``bootstrap`` built for this app."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from flask import current_app

from bootstrap import Pulse

try:
    VERSION = version("pulse")
except PackageNotFoundError:  # running from a source tree that was not installed
    VERSION = "0.0.0+source"


def current_pulse() -> Pulse:
    return current_app.extensions["pulse"]


__all__ = ["VERSION", "Pulse", "current_pulse"]
