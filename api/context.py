"""What a request handler needs, built once per app: settings and adapters."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from flask import current_app

from domain.clock import SYSTEM_CLOCK, Clock
from domain.ports import EventStore, ViewStore
from domain.settings import Settings

try:
    VERSION = version("pulse")
except PackageNotFoundError:  # running from a source tree that was not installed
    VERSION = "0.0.0+source"


@dataclass
class Pulse:
    settings: Settings
    store: EventStore
    #: Read models; opened on first use (api.graphql_metrics.views_of) unless given.
    views: ViewStore | None = None
    #: What "now" is for results that depend on it (series ranges, occurredAt, stream tokens).
    clock: Clock = SYSTEM_CLOCK


def current_pulse() -> Pulse:
    return current_app.extensions["pulse"]
