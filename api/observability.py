"""What each web process counts for ``GET /metrics`` (prometheus_client), and the request
id of every request.

Counters and histograms live in this module, one set per process; under gunicorn
``pulse serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker imports
prometheus_client, so each worker writes its values to files there and a scrape of any
worker sums them (``api.prometheus``). Figures that are state rather than counts (lag,
parked events) are read from the stores at scrape time instead, so every process
reports the same.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request
from prometheus_client import Counter, Gauge, Histogram

from api.logs import request_id

log = logging.getLogger(__name__)

EVENTS_ACCEPTED = Counter("pulse_events_accepted", "Events newly stored by ingest (REST and GraphQL).")
EVENTS_DUPLICATES = Counter(
    "pulse_events_duplicates", "Events of accepted batches whose id was stored already or repeated in the batch."
)
EVENTS_REJECTED = Counter(
    "pulse_events_rejected",
    "Ingest requests refused, by reason (invalid, too_large, unsupported_media_type, malformed,"
    " unauthenticated, forbidden, unavailable, conflict).",
    ["reason"],
)
REQUEST_SECONDS = Histogram(
    "pulse_http_request_duration_seconds",
    "Time to answer a request (to the first byte of a stream), per route rule, method and status.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
OPEN_STREAMS = Gauge(
    "pulse_subscription_streams_open", "Subscription streams open now (all processes).", multiprocess_mode="livesum"
)

#: Ingest answers by status: why a batch was refused.
REJECTION_REASONS = {
    400: "malformed",
    401: "unauthenticated",
    403: "forbidden",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    503: "unavailable",
}
INGEST_ENDPOINTS = frozenset({"ingest.post_events"})
#: A client's X-Request-Id is kept when it is this sane; else a new one is made.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
REQUEST_ID_HEADER = "X-Request-Id"


def count_ingested(accepted: int, duplicates: int) -> None:
    EVENTS_ACCEPTED.inc(accepted)
    EVENTS_DUPLICATES.inc(duplicates)


def count_rejected(reason: str) -> None:
    EVENTS_REJECTED.labels(reason).inc()


def stream_opened() -> None:
    OPEN_STREAMS.inc()


def stream_closed() -> None:
    OPEN_STREAMS.dec()


def instrument(app: Flask) -> None:
    """Request ids, latency per route and ingest rejections for every request of ``app``."""

    @app.before_request
    def start() -> None:
        sent = request.headers.get(REQUEST_ID_HEADER, "")
        rid = sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        g.pulse_request_id = rid
        g.pulse_request_token = request_id.set(rid)
        g.pulse_started = time.perf_counter()

    @app.after_request
    def finish(response: Response) -> Response:
        rid = g.get("pulse_request_id")
        if rid is not None:
            response.headers[REQUEST_ID_HEADER] = rid
        started = g.get("pulse_started")
        if started is not None:
            route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            REQUEST_SECONDS.labels(route, request.method, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        if request.endpoint in INGEST_ENDPOINTS and response.status_code >= 400:
            count_rejected(REJECTION_REASONS.get(response.status_code, f"http_{response.status_code}"))
        return response

    @app.teardown_request
    def forget(_exc: BaseException | None) -> None:
        token = g.get("pulse_request_token")
        if token is not None:
            try:
                request_id.reset(token)
            except ValueError:  # set in another context (a streamed response's generator)
                request_id.set(None)
