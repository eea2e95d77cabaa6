"""The Flask application factory."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import yaml
from flask import Flask, jsonify, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException

from api.auth import Forbidden, Unauthenticated
from api.datasets import datasets
from api.graphiql import graphiql_assets
from api.graphql_schema import schema
from api.graphql_view import PulseGraphQLView, StreamSlots
from api.health import probes
from api.ingest import ingest
from api.observability import instrument
from api.prometheus import metrics_endpoint
from api.rest import v1
from api.webapp import webapp
from bootstrap import Pulse, bootstrap
from domain.clock import Clock
from domain.errors import StoreUnavailable, ValidationError
from domain.settings import Settings

log = logging.getLogger("pulse")

OPENAPI_YAML = Path(__file__).resolve().parent.parent / "openapi" / "openapi.yaml"


@functools.cache
def openapi_document() -> dict:
    """openapi/openapi.yaml, parsed once; served as JSON at /openapi.json."""
    return yaml.safe_load(OPENAPI_YAML.read_text(encoding="utf-8"))


def create_app(settings: Settings | None = None, pulse: Pulse | None = None, clock: Clock | None = None) -> Flask:
    """The web app of ``pulse`` (bootstrapped from ``settings`` or the environment when not given),
    reading "now" from ``clock`` when given (the Pulse's own otherwise, the system clock by default)."""
    if pulse is None:
        pulse = bootstrap(settings or Settings.from_env(os.environ), clock=clock)
    elif (settings is not None and settings != pulse.settings) or (clock is not None and clock is not pulse.clock):
        pulse = pulse.with_settings(settings or pulse.settings, clock)
    settings = pulse.settings
    app = Flask("pulse", static_folder=None)  # the only static files: GraphiQL's, below
    app.extensions["pulse"] = pulse
    CORS(
        app,
        origins=list(settings.cors_origins),
        allow_headers=["Authorization", "X-Api-Key", "Content-Type", "Content-Encoding"],
        expose_headers=["Retry-After", "WWW-Authenticate"],
        max_age=600,
    )
    if not settings.auth:
        log.warning(
            "AUTH IS OFF (--no-auth / PULSE_AUTH=off): anyone who can reach this server may ingest, read"
            " and administer Pulse without an API key. Never expose it beyond a trusted machine."
        )
    stream_slots = StreamSlots(settings.max_streams)
    app.extensions["pulse.stream_slots"] = stream_slots  # GET /v1/live reports it
    app.register_blueprint(v1)
    app.register_blueprint(datasets)
    app.register_blueprint(ingest)
    app.register_blueprint(probes)
    app.register_blueprint(graphiql_assets)
    app.register_blueprint(metrics_endpoint)
    app.register_blueprint(webapp)  # the browser app at /, its files at /app/ and /vendor/
    instrument(app)  # request ids and the per-route latency GET /metrics reports
    app.add_url_rule("/openapi.json", "openapi", lambda: jsonify(openapi_document()))
    app.add_url_rule(
        "/graphql",
        view_func=PulseGraphQLView.as_view(
            "graphql",
            schema=schema,
            graphql_ide="graphiql",
            stream_slots=stream_slots,
            heartbeat_seconds=settings.heartbeat_seconds,
        ),
    )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # Every error body is JSON with a human-readable message, whatever the route.
        return jsonify(message=f"{exc.name}: {exc.description} ({request.method} {request.path})"), exc.code

    @app.errorhandler(Unauthenticated)
    def unauthenticated(exc: Unauthenticated):
        return jsonify(message=str(exc)), 401, {"WWW-Authenticate": exc.challenge}

    @app.errorhandler(Forbidden)
    def forbidden(exc: Forbidden):
        return jsonify(message=str(exc)), 403

    @app.errorhandler(ValidationError)
    def invalid(exc: ValidationError):
        return jsonify(message=str(exc), errors=[error.as_dict() for error in exc.errors]), 422

    @app.errorhandler(StoreUnavailable)
    def unavailable(exc: StoreUnavailable):
        return jsonify(message=f"the event store is unavailable, retry shortly: {exc}"), 503, {"Retry-After": "5"}

    return app
