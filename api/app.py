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
from api.context import Pulse
from api.graphql_schema import schema
from api.graphql_view import PulseGraphQLView, StreamSlots
from api.ingest import ingest
from api.rest import v1
from domain.clock import SYSTEM_CLOCK, Clock
from domain.errors import StoreUnavailable, ValidationError
from domain.ports import EventStore
from domain.settings import Settings
from storage.factory import open_event_store

log = logging.getLogger("pulse")

OPENAPI_YAML = Path(__file__).resolve().parent.parent / "openapi" / "openapi.yaml"


@functools.cache
def openapi_document() -> dict:
    """openapi/openapi.yaml, parsed once; served as JSON at /openapi.json."""
    return yaml.safe_load(OPENAPI_YAML.read_text(encoding="utf-8"))


def create_app(settings: Settings | None = None, store: EventStore | None = None, clock: Clock = SYSTEM_CLOCK) -> Flask:
    settings = settings or Settings.from_env(os.environ)
    app = Flask("pulse")
    app.extensions["pulse"] = Pulse(settings=settings, store=store or open_event_store(settings), clock=clock)
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
    app.register_blueprint(ingest)
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
