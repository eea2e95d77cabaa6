"""REST for datasets and CSV exports (documented in openapi/openapi.yaml).

- ``POST /v1/datasets`` creates a dataset (409 if it exists), ``PUT /v1/datasets/<name>``
  replaces its data (404 if it does not), both ``editor``: a JSON body ``{name, data, types}``
  (``data``: CSV text or a list of row objects) or ``multipart/form-data`` (``file``, ``name``,
  ``types`` as JSON text). Too big: 413; a bad value: 422 naming the row and column; the
  upload is refused whole. A JSON body with ``query`` instead of ``data`` (a SERIES,
  BREAKDOWN, GAUGE or RECENT_EVENTS query) makes a dynamic dataset, answered when read.
- ``GET /v1/datasets/<name>`` (schema) and ``GET /v1/datasets/<name>.csv`` need ``read``;
  ``DELETE /v1/datasets/<name>`` needs ``editor`` and is 409, naming the widgets, while a
  dashboard shows it.
- ``POST /v1/images`` (``editor``): a PNG, JPEG, GIF or WebP for IMAGE widgets, served by
  ``GET /v1/images/<id>`` to whoever has the (unguessable) id.
- ``GET /v1/dashboards/<slug>/widgets/<id>.csv``: the widget's data as ``dashboard(slug)``
  resolves it, with the same visibility: no key needed for a PUBLIC published dashboard,
  and 404 (not 403) for what the caller may not see.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

from api.auth import principal_of
from api.context import current_pulse
from domain import datasets as parsing
from domain.access import Principal, require
from domain.datasets import Dataset, DatasetConflict, DatasetTooLarge, Table
from domain.errors import FieldError, NotFound, ValidationError
from domain.widgets import Source, parse_source
from services import images
from services.dashboard_export import widget_csv
from services.dashboards import ANONYMOUS
from services.datasets import table_csv

datasets = Blueprint("datasets", __name__, url_prefix="/v1")
CSV = "text/csv; charset=utf-8"
#: The body: the dataset itself plus room for the JSON or multipart envelope.
MAX_REQUEST_BYTES = parsing.MAX_BYTES + 64 * 1024


@datasets.errorhandler(NotFound)
def not_found(exc: NotFound):
    return jsonify(message=str(exc)), 404


@datasets.errorhandler(DatasetConflict)
def conflict(exc: DatasetConflict):
    return jsonify(message=str(exc), widgets=exc.widgets), 409


@datasets.errorhandler(DatasetTooLarge)
def too_large(exc: DatasetTooLarge):
    return jsonify(message=str(exc), errors=[e.as_dict() for e in exc.errors]), 413


def _caller() -> Principal:
    pulse = current_pulse()
    sent = request.headers.get("Authorization") or request.headers.get("X-Api-Key")
    if pulse.settings.auth and not sent:
        return ANONYMOUS
    return principal_of(request, pulse)


def _types(raw: Any) -> dict[str, str] | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ValidationError([FieldError("types", "must be a JSON object: column name to type")]) from None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ValidationError([FieldError("types", "must be an object: column name to type")])
    return raw


def _read_upload(name_required: bool) -> tuple[str | None, Table | Source]:
    """The name and the rows (a static dataset) or the query (a dynamic one) sent."""
    declared = request.content_length
    if declared is not None and declared > MAX_REQUEST_BYTES:
        raise RequestEntityTooLarge(f"the body is {declared} bytes; a dataset is at most {parsing.MAX_BYTES} bytes")
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise ValidationError([FieldError("file", "attach the CSV or JSON file as the form field 'file'")])
        data = upload.read(MAX_REQUEST_BYTES + 1)
        name = request.form.get("name")
        types = _types(request.form.get("types"))
        is_json = (upload.mimetype == "application/json") or (upload.filename or "").lower().endswith(".json")
        table = parsing.parse_json(_json(data), types) if is_json else parsing.parse_csv(data, types)
    elif request.mimetype == "application/json":
        body = _json(_body())
        if not isinstance(body, dict):
            raise ValidationError([FieldError("body", "must be an object: {name, data, types}")])
        name = body.get("name")
        types = _types(body.get("types"))
        data = body.get("data")
        if data is None and body.get("query") is not None:
            if name_required:
                parsing.check_name(name)
            return name, parse_source(body["query"])
        if isinstance(data, str):
            table = parsing.parse_csv(data.encode("utf-8", "surrogatepass"), types)
        elif isinstance(data, list):
            table = parsing.parse_json(data, types)
        else:
            raise ValidationError(
                [
                    FieldError(
                        "data", "is required: CSV text or a list of row objects (or a query, for a dynamic dataset)"
                    )
                ]
            )
    elif request.mimetype == "text/csv":
        data = _body()
        name = request.args.get("name")
        table = parsing.parse_csv(data, _types(request.args.get("types")))
    else:
        sent = request.content_type or "none"
        raise UnsupportedMediaType(f"send application/json, multipart/form-data or text/csv; got {sent}")
    if name_required:
        parsing.check_name(name)
    return name, table


def _body() -> bytes:
    """At most one byte past the limit, whatever the body claims (chunked bodies have no length)."""
    data = request.stream.read(MAX_REQUEST_BYTES + 1)
    if len(data) > MAX_REQUEST_BYTES:
        raise RequestEntityTooLarge(
            f"the body is over {MAX_REQUEST_BYTES} bytes; a dataset is at most {parsing.MAX_BYTES}"
        )
    return data


def _json(data: bytes) -> Any:
    if len(data) > MAX_REQUEST_BYTES:
        raise DatasetTooLarge([FieldError("data", f"the upload is over {parsing.MAX_BYTES} bytes")])
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {str(exc)[:200]}") from None


def _described(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "columns": [{"name": c.name, "type": c.type} for c in dataset.columns],
        "rows": dataset.rows,
        "bytes": dataset.bytes,
        "query": None if dataset.query is None else dict(dataset.query),
        "version": dataset.version,
        "updatedAt": None if dataset.updated_at is None else dataset.updated_at.isoformat(),
        "updatedBy": dataset.updated_by,
    }


@datasets.post("/datasets")
def create_dataset():
    principal = require(principal_of(request, current_pulse()), "editor")
    name, sent = _read_upload(name_required=True)
    return jsonify(_described(_store(principal, name or "", sent, replace=False))), 201


def _store(principal: Principal, name: str, sent: Table | Source, replace: bool) -> Dataset:
    service = current_pulse().datasets
    if isinstance(sent, Source):
        return service.define(principal, name, sent, replace)
    return service.upload(principal, name, sent, replace)


@datasets.put("/datasets/<name>")
def replace_dataset(name: str):
    principal = require(principal_of(request, current_pulse()), "editor")
    named, sent = _read_upload(name_required=False)
    if named is not None and named != name:
        raise ValidationError([FieldError("name", f"the body names {named!r}, the path {name!r}")])
    return jsonify(_described(_store(principal, name, sent, replace=True)))


@datasets.get("/datasets")
def list_datasets():
    principal = principal_of(request, current_pulse())
    return jsonify(datasets=[_described(d) for d in current_pulse().datasets.listed(principal)])


@datasets.get("/datasets/<name>")
def get_dataset(name: str):
    principal = principal_of(request, current_pulse())
    if name.endswith(".csv"):
        pulse = current_pulse()
        dataset = pulse.datasets.get(principal, name.removesuffix(".csv"))  # read scope, or 404
        table = pulse.dashboards.dataset_table(dataset.name)
        return Response(table_csv([c.name for c in table.columns], table.rows), 200, content_type=CSV)
    return jsonify(_described(current_pulse().datasets.get(principal, name)))


@datasets.delete("/datasets/<name>")
def delete_dataset(name: str):
    principal = principal_of(request, current_pulse())
    return jsonify(_described(current_pulse().datasets.delete(principal, name)))


@datasets.post("/images")
def upload_image():
    """An image for IMAGE widgets: ``multipart/form-data`` (``file``) or the raw bytes."""
    principal = require(principal_of(request, current_pulse()), "editor")
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise ValidationError([FieldError("file", "attach the image as the form field 'file'")])
        data = upload.read(images.MAX_BYTES + 1)
    elif request.mimetype.startswith("image/"):
        data = request.stream.read(images.MAX_BYTES + 1)
    else:
        sent = request.content_type or "none"
        raise UnsupportedMediaType(f"send multipart/form-data or the image itself (image/*); got {sent}")
    image = current_pulse().images.upload(principal, data)
    return jsonify(id=image.id, url=image.url, contentType=image.content_type, bytes=image.bytes), 201


@datasets.get("/images/<image_id>")
def get_image(image_id: str):
    data, kind = current_pulse().images.get(image_id)
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
    return Response(data, 200, content_type=kind, headers=headers)


@datasets.get("/dashboards/<slug>/widgets/<widget_id>.csv")
def widget_export(slug: str, widget_id: str):
    pulse = current_pulse()
    resolved = pulse.dashboards.resolve(_caller(), slug)
    data = next((d for d in resolved.widgets if d.widget.id == widget_id), None)
    if data is None:
        raise NotFound(f"dashboard {slug!r} has no widget {widget_id[:80]!r}")
    return Response(widget_csv(data, pulse.bucketing), 200, content_type=CSV)
