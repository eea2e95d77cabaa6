"""The /graphql view: queries and mutations, plus subscriptions streamed over HTTP.

Subscriptions use the two HTTP transports strawberry implements in its base view:
graphql-sse's distinct-connections mode (``Accept: text/event-stream``) and multipart
subscriptions (``Accept: multipart/mixed;subscriptionSpec=1.0``, what Apollo Client speaks).
strawberry's Flask view does not implement ``create_streaming_response``; this one does,
by giving each request its own event loop and, for a stream, keeping that loop for the
stream's life: the WSGI body pulls one chunk at a time from the subscription's async
generator on the thread gunicorn gave the request. When the client goes away, the next
write (a heartbeat at the latest) fails, gunicorn closes the body, and closing it closes
the generator and the loop, which releases the thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import threading
from collections.abc import AsyncGenerator, Callable, Mapping
from functools import cached_property
from typing import Any

from cross_web import HTTPException
from flask import Request, Response, jsonify, request
from strawberry.flask.views import AsyncGraphQLView
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.streaming import HTTPStreamTransport, MultipartSubscriptionTransport, SSETransport
from strawberry.subscriptions import GRAPHQL_SSE_PROTOCOL, MULTIPART_SUBSCRIPTION_PROTOCOL
from strawberry.types import ExecutionResult, SubscriptionExecutionResult
from werkzeug.local import LocalProxy

from api.context import current_pulse
from api.graphiql import graphiql_html
from api.live import SharedData
from api.observability import stream_closed, stream_opened
from api.stream_body import Heartbeat, StreamBody, shared_frame
from api.stream_sink import StreamSink

log = logging.getLogger(__name__)

# A GraphQL request is a query and its variables; a megabyte leaves room for ingestEvents'
# 1,000 events while refusing bodies that would only cost memory.
MAX_REQUEST_BYTES = 1024 * 1024


class StreamSlots:
    """A per-process cap on open subscription streams.

    Each stream holds a gunicorn thread for its whole life, so the cap must leave threads
    free for queries and ingest.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        return self._open

    def try_acquire(self) -> bool:
        with self._lock:
            if self._open >= self.limit:
                return False
            self._open += 1
        stream_opened()
        return True

    def release(self) -> None:
        with self._lock:
            self._open -= 1
        stream_closed()


class PulseGraphQLView(AsyncGraphQLView):
    def __init__(
        self,
        *args: Any,
        stream_slots: StreamSlots,
        heartbeat_seconds: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            *args,
            subscription_protocols=(GRAPHQL_SSE_PROTOCOL, MULTIPART_SUBSCRIPTION_PROTOCOL),
            **kwargs,
        )
        self.stream_slots = stream_slots
        self.heartbeat_seconds = heartbeat_seconds

    @cached_property
    def _stream_transport_map(self) -> dict[str, HTTPStreamTransport]:
        sse = SSETransport(heartbeat_interval=self.heartbeat_seconds)
        multipart = MultipartSubscriptionTransport()
        multipart.heartbeat_interval = self.heartbeat_seconds
        return {sse.protocol: sse, multipart.protocol: multipart}

    @property
    def graphql_ide_html(self) -> str:
        # The GraphiQL page with its assets served by Pulse (api/graphiql.py), not unpkg.com.
        return graphiql_html()

    def encode_json(self, data: object) -> str | bytes:
        # A live push is one SharedData for all its subscribers (api/graphql_live.py): a
        # response of nothing but that data is the same for all, so encoded once.
        pushed = data.get("data") if type(data) is dict and len(data) == 1 else None
        if isinstance(pushed, SharedData):
            encode = super().encode_json
            return pushed.encoded("data", lambda: encode(data))
        return super().encode_json(data)

    async def get_context(self, request: Request, response: Response) -> dict[str, Any]:
        # Resolved now, not through proxies: a stream outlives Flask's request context, and a
        # subscription's operation (auth included) only runs once the body is iterated.
        if isinstance(request, LocalProxy):
            request = request._get_current_object()  # type: ignore[assignment]
        return {"request": request, "response": response, "pulse": current_pulse()}

    def decode_json(self, data: str | bytes) -> object:
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HTTPException(400, f"the body is not valid UTF-8 (byte {exc.start})") from None
        try:
            decoded = json.loads(data, parse_int=_parse_int)
        except RecursionError:
            # Absurdly deep nesting is a malformed request (400), not a server fault.
            raise json.JSONDecodeError("nested too deeply", "", 0) from None
        if _TooManyDigits.seen(decoded):
            raise HTTPException(400, _TooManyDigits.message(decoded))
        return decoded

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        for error in response.get("errors") or ():
            extensions = error.setdefault("extensions", {}) if isinstance(error, dict) else None
            if extensions is not None and "code" not in extensions:
                extensions["code"] = _code_of(error)
        return response

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        # Nothing ran (the document does not parse, fails validation or is over budget):
        # the request itself is wrong, as the GraphQL-over-HTTP spec answers it (400).
        if isinstance(response_data, dict) and _refused_before_execution(response_data):
            sub_response.status_code = 400
        return super().create_response(response_data, sub_response)

    def dispatch_request(self) -> Response:  # type: ignore[override]
        # Reading more answers 413 through the app's JSON error handler.
        request.max_content_length = MAX_REQUEST_BYTES
        wants_stream = self._get_stream_transport_from_headers(request.headers) is not None
        if wants_stream and not self.stream_slots.try_acquire():
            response = jsonify(
                message=(
                    f"too many open subscription streams in this process "
                    f"(limit {self.stream_slots.limit}); retry later or add server capacity"
                )
            )
            response.status_code = 503
            response.headers["Retry-After"] = "5"
            return response
        loop = asyncio.new_event_loop()
        try:
            response = loop.run_until_complete(self.run(request=request))
        except HTTPException as exc:
            response = jsonify(message=exc.reason)
            response.status_code = exc.status_code
        except BaseException:
            self._finish(loop, wants_stream)
            raise
        if not getattr(response, "is_pulse_stream", False):
            self._finish(loop, wants_stream)
        return response

    def _finish(self, loop: asyncio.AbstractEventLoop, holds_slot: bool) -> None:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        if holds_slot:
            self.stream_slots.release()

    def _stream_result(
        self, request: Request, result: SubscriptionExecutionResult, transport: HTTPStreamTransport
    ) -> Callable[[], AsyncGenerator[str | bytes, None]]:
        # strawberry's, minus its heartbeat tasks (StreamBody sends heartbeats) and with a
        # shared push framed once for all its subscribers (api/stream_body.py).
        async def stream() -> AsyncGenerator[str | bytes, None]:
            all_pending: list[Any] = []
            async for value in result:
                frame = shared_frame(value, transport, self.encode_json_string)
                if frame is None:
                    response, all_pending = await self._process_stream_result(request, value, all_pending)
                    frame = transport.encode_next(response, self.encode_json_string).encode()
                yield frame
            yield transport.encode_complete().encode()

        stream.heartbeat = Heartbeat(  # type: ignore[attr-defined]
            transport.heartbeat_message(self.encode_json_string).encode(),
            transport.heartbeat_interval,
            transport.send_initial_heartbeat,
        )
        return stream

    async def create_streaming_response(
        self,
        request: Request,
        stream: Callable[[], AsyncGenerator[str, None]],
        sub_response: Response,
        headers: Mapping[str, str],
    ) -> Response:
        sock = request.environ.get("gunicorn.socket")
        body = StreamBody(
            stream(),
            asyncio.get_running_loop(),
            on_close=self.stream_slots.release,
            peer_gone=_peer_gone_check(sock),
            heartbeat=getattr(stream, "heartbeat", None),
            sink=_sink_for(request, sock, headers),
        )
        response = Response(body, status=sub_response.status_code, headers={**dict(sub_response.headers), **headers})
        response.is_pulse_stream = True  # type: ignore[attr-defined]
        return response


#: Codes of errors raised before anything executes; the rest are answered 200 with data.
PRE_EXECUTION_CODES = frozenset(
    {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED", "QUERY_TOO_COSTLY", "INTROSPECTION_DISABLED"}
)


def _code_of(error: Mapping[str, Any]) -> str:
    """The code of a GraphQL error that graphql-core or strawberry raised without one:
    a document that does not parse or validate (no path: nothing executed), else a fault."""
    if "path" not in error or error["path"] is None:
        if str(error.get("message", "")).startswith("Syntax Error"):
            return "GRAPHQL_PARSE_FAILED"
        return "GRAPHQL_VALIDATION_FAILED"
    return "INTERNAL_SERVER_ERROR"


def _refused_before_execution(response: Mapping[str, Any]) -> bool:
    errors = response.get("errors")
    return (
        bool(errors)
        and response.get("data") is None
        and all(
            isinstance(error, dict) and error.get("extensions", {}).get("code") in PRE_EXECUTION_CODES
            for error in errors
        )
    )


class _TooManyDigits:
    """An integer in a JSON body longer than Python converts (4,300 digits): kept as this
    marker while decoding, so the 400 can name where it was."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    @classmethod
    def seen(cls, value: object) -> bool:
        return cls._find(value, "") is not None

    @classmethod
    def message(cls, value: object) -> str:
        path, marker = cls._find(value, "")  # type: ignore[misc]
        return (
            f"{path or 'the body'}: an integer of {marker.digits} digits; numbers of at most"
            f" {sys.get_int_max_str_digits()} digits are accepted"
        )

    @classmethod
    def _find(cls, value: object, path: str) -> tuple[str, _TooManyDigits] | None:
        if isinstance(value, cls):
            return path, value
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            if isinstance(item, dict | list | cls):
                found = cls._find(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}".lstrip("."))
                if found is not None:
                    return found
        return None


def _parse_int(text: str) -> int | _TooManyDigits:
    digits = len(text.lstrip("-"))
    if digits > sys.get_int_max_str_digits() > 0:
        return _TooManyDigits(digits)
    return int(text)


def _sink_for(request: Request, sock: socket.socket | None, headers: Mapping[str, str]) -> StreamSink | None:
    """The stream's own socket, once gunicorn sent the head (``api.stream_sink``), framed as
    gunicorn frames a body: chunked for HTTP/1.1 and later. None on other servers."""
    if sock is None or request.method == "HEAD":
        return None
    chunked = request.environ.get("SERVER_PROTOCOL", "HTTP/1.1") not in ("HTTP/1.0", "HTTP/0.9")
    return StreamSink(sock, chunked, share_key=headers.get("Content-Type"))


def _peer_gone_check(sock: socket.socket | None) -> Callable[[], bool] | None:
    """Whether the client closed the connection of this stream: its socket reads as EOF.
    A subscriber sends nothing after its request, so a readable socket means it left."""
    if sock is None:
        return None

    def gone() -> bool:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False  # nothing to read: still there
        except ValueError:
            return False  # a TLS socket cannot peek: leave it to the failing write
        except OSError:
            return True  # reset by the peer

    return gone
