"""``GET /metrics``: Pulse's figures in the Prometheus text format.

Two sources make one answer:

- what the web processes count (``api.observability``: events accepted, duplicates,
  rejections by reason, request latency per route, open subscription streams): from this
  process's registry, or, under gunicorn (``PROMETHEUS_MULTIPROC_DIR`` set by
  ``pulse serve``), summed over every worker's files by ``MultiProcessCollector``;
- the projections' state (``ProjectionCollector``): lag in events and seconds, events per
  second, parked events, age of the last checkpoint write, read from the stores at
  scrape time, so every process answers the same and a stopped worker shows as lag; and
  per metric of a value, the facts it skipped because their value was not a number
  (``pulse_metric_values_skipped``).

Access (``PULSE_METRICS_ACCESS``): ``local`` (the default) answers callers on 127.0.0.1
or ::1 without a key and others with a ``read`` (or ``admin``) key; ``key`` always needs
one; ``open`` answers anyone. Behind a reverse proxy on the same machine every caller is
local: use ``key`` there.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

from flask import Blueprint, Response, request
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from api.auth import authorize
from api.context import Pulse, current_pulse
from domain.access import OPEN_ACCESS
from domain.errors import StoreUnavailable

log = logging.getLogger(__name__)

metrics_endpoint = Blueprint("prometheus", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


class ProjectionCollector(Collector):
    """The projections' figures, read from the checkpoints and parked events at scrape time."""

    def __init__(self, pulse: Pulse) -> None:
        self.pulse = pulse

    def collect(self) -> Iterator[Metric]:
        labels = ["projection", "partition"]
        lag_events = GaugeMetricFamily(
            "pulse_projection_lag_events", "Events of the log past the projection's checkpoint.", labels=labels
        )
        lag_seconds = GaugeMetricFamily(
            "pulse_projection_lag_seconds",
            "Age of the oldest event the projection has not applied (0: none).",
            labels=labels,
        )
        rate = GaugeMetricFamily(
            "pulse_projection_events_per_second",
            "Events per second the projection last applied (0 once idle).",
            labels=labels,
        )
        write_age = GaugeMetricFamily(
            "pulse_projection_last_write_age_seconds",
            "Seconds since the projection last moved its checkpoint.",
            labels=labels,
        )
        parked = GaugeMetricFamily(
            "pulse_projection_parked_events",
            "Events the projection parked (`pulse parked list`).",
            labels=["projection"],
        )
        replay = GaugeMetricFamily(
            "pulse_projection_replay_progress",
            "Share (0 to 1) of a running replay done; absent while none runs.",
            labels=["projection"],
        )
        skipped = GaugeMetricFamily(
            "pulse_metric_values_skipped",
            "Facts a metric of a value left out because their value property was not a number"
            ' (e.g. the text "12.50" without parseNumericStrings).',
            labels=["metric"],
        )
        up = GaugeMetricFamily("pulse_store_up", "1 when the stores answered this scrape, else 0.")
        try:
            states = self.pulse.metrics.projections(OPEN_ACCESS)
            counts = self.pulse.parked.counts()
            skipped_values = self.pulse.metrics.skipped_values(OPEN_ACCESS)
        except StoreUnavailable as exc:
            log.warning("metrics scrape: the store is unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        now = time.time()
        names: set[str] = set()
        for state in states:
            cp = state.checkpoint
            names.add(cp.projection)
            key = [cp.projection, cp.partition]
            if state.lag_events is not None:
                lag_events.add_metric(key, state.lag_events)
            if state.lag_seconds is not None:
                lag_seconds.add_metric(key, state.lag_seconds)
            rate.add_metric(key, state.events_per_second)
            if cp.updated_at is not None:
                write_age.add_metric(key, max(now - cp.updated_at / 1e6, 0.0))
            # A replay's progress, once the status carries one (`pulse replay`, issue 9 part 1).
            progress = getattr(state, "progress", None)
            if isinstance(progress, int | float):
                replay.add_metric([cp.projection], float(progress))
        for name in sorted(names | set(counts)):
            parked.add_metric([name], counts.get(name, 0))
        for metric, n in skipped_values.items():
            skipped.add_metric([metric], n)
        up.add_metric([], 1)
        yield from (lag_events, lag_seconds, rate, write_age, parked, replay, skipped, up)


def _allowed(pulse: Pulse) -> None:
    """Raises ``Unauthenticated``/``Forbidden`` (401/403) unless the caller may scrape."""
    access = pulse.settings.metrics_access
    if access == "open" or (access == "local" and request.remote_addr in LOCAL_ADDRESSES):
        return
    authorize(request, pulse, "read")


def exposition(pulse: Pulse) -> bytes:
    """The text of one scrape."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    state = CollectorRegistry()
    state.register(ProjectionCollector(pulse))
    return generate_latest(counted) + generate_latest(state)


@metrics_endpoint.get("/metrics")
def metrics() -> Response:
    pulse = current_pulse()
    _allowed(pulse)
    return Response(exposition(pulse), mimetype=None, content_type=CONTENT_TYPE)
