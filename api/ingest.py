"""POST /v1/events: batch ingest over REST (described in openapi/openapi.yaml).

The body is read with hard limits before anything is parsed: at most 1 MiB once
decompressed, and a gzip body is inflated in bounded steps, so a gzip bomb costs at most
1 MiB of memory before it is refused. 202 is sent only after the store returned, i.e.
the batch is durable.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, BinaryIO

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

from api.auth import requires_scope
from api.context import current_pulse
from api.observability import count_ingested
from api.validation import MAX_BODY_BYTES, MAX_EVENTS, parse_body, parse_events
from domain.clock import now_utc

ingest = Blueprint("ingest", __name__, url_prefix="/v1")

JSON = "application/json"
NDJSON = "application/x-ndjson"
_GZIP = ("gzip", "x-gzip")
_READ_CHUNK = 64 * 1024
# Incompressible data grows a little when gzipped; a compressed body larger than this
# cannot inflate to an acceptable size (and empty gzip members could pad it forever).
_MAX_COMPRESSED_BYTES = MAX_BODY_BYTES + 64 * 1024


@ingest.post("/events")
@requires_scope("ingest")
def post_events():
    media_type = _media_type()
    text = _utf8(_read_body())
    pulse = current_pulse()
    if media_type == NDJSON:
        events = parse_events(
            _ndjson_events(text),
            pulse.settings.max_future_seconds,
            now_utc(pulse.clock),
            max_past_days=pulse.settings.max_past_days,
        )
    else:
        body = _json_document(text)
        if isinstance(body, dict) and isinstance(body.get("events"), list):
            _refuse_too_many(len(body["events"]))
        events = parse_body(
            body, pulse.settings.max_future_seconds, now_utc(pulse.clock), max_past_days=pulse.settings.max_past_days
        )
    result = pulse.store.ingest(events)
    count_ingested(result.accepted, result.duplicates)
    return (
        jsonify(
            accepted=result.accepted,
            duplicates=result.duplicates,
            conflicts=result.conflicts,
            conflictIds=list(result.conflict_ids),
            ids=list(result.ids),
        ),
        202,
    )


def _media_type() -> str:
    media_type = request.mimetype
    if media_type not in (JSON, NDJSON):
        sent = request.content_type or "none"
        raise UnsupportedMediaType(f"Content-Type must be {JSON} or {NDJSON}; got {sent}")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"the body must be UTF-8; got charset={charset}")
    return media_type


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not valid UTF-8 (byte {exc.start})") from None


def _read_body() -> bytes:
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "", *_GZIP):
        raise UnsupportedMediaType(f"Content-Encoding must be gzip or absent; got {encoding}")
    declared = request.content_length
    stream: BinaryIO = request.stream  # type: ignore[assignment]
    if encoding in _GZIP:
        if declared is not None and declared > _MAX_COMPRESSED_BYTES:
            _too_large(f"the compressed body is {declared} bytes")
        return _gunzip(stream)
    if declared is not None and declared > MAX_BODY_BYTES:
        _too_large(f"the body is {declared} bytes")
    raw = stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        _too_large("the body is larger")
    return raw


def _gunzip(stream: BinaryIO) -> bytes:
    """Inflate at most MAX_BODY_BYTES + 1 bytes, whatever the compressed stream claims."""
    out = bytearray()
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    compressed = 0
    try:
        while chunk := stream.read(_READ_CHUNK):
            compressed += len(chunk)
            if compressed > _MAX_COMPRESSED_BYTES:
                _too_large(f"the compressed body exceeds {_MAX_COMPRESSED_BYTES} bytes")
            data = chunk
            while data:
                out += inflater.decompress(data, MAX_BODY_BYTES + 1 - len(out))
                if len(out) > MAX_BODY_BYTES:
                    _too_large("the body inflates to more")
                if inflater.eof:
                    # Concatenated gzip members are one valid gzip stream.
                    data = inflater.unused_data
                    if data:
                        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                else:
                    data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise BadRequest(f"the body is not valid gzip: {exc}") from None
    if not inflater.eof:
        raise BadRequest("the gzip body ends early (truncated)")
    return bytes(out)


def _too_large(what: str) -> None:
    raise RequestEntityTooLarge(f"{what}; at most {MAX_BODY_BYTES} bytes (decompressed) per request")


def _refuse_too_many(count: int) -> None:
    if count > MAX_EVENTS:
        raise RequestEntityTooLarge(f"{count} events sent; at most {MAX_EVENTS} per request")


def _json_document(text: str, where: str = "the body") -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise BadRequest(f"{where} nests arrays or objects too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or a number past Python's 4300-digit limit
        raise BadRequest(f"{where} is not valid JSON: {exc}") from None


def _ndjson_events(text: str) -> list[Any]:
    lines = [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    _refuse_too_many(len(lines))
    return [_json_document(line, f"line {number}") for number, line in lines]
