"""Log lines as an operator's tools read them: ``PULSE_LOG_FORMAT=json`` writes one JSON
object per line (time, level, logger, message, request id, traceback), the default
``text`` a readable line; both carry the request id of the request being served.

The request id is a context variable the web app sets for each request (from the
``X-Request-Id`` header when sent, else generated; see ``api.observability``), so every
line logged while serving it, in any module, carries it. Outside a request it is absent.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

#: The id of the request this thread serves now (None outside a request).
request_id: ContextVar[str | None] = ContextVar("pulse_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s%(request_tag)s %(message)s"


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` (and ``request_tag``, " [id]" or "") on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.get()
        if current is None and isinstance(record.args, dict):
            # gunicorn's access line, logged after the request: its response header.
            sent = record.args.get("{x-request-id}o")
            current = sent if sent and sent != "-" else None
        record.request_id = current
        record.request_tag = f" [{current}]" if current else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, process_name: str = "pulse") -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": self.process_name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            line["request_id"] = rid
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_handler(log_format: str, process_name: str = "pulse", stream=None) -> logging.Handler:
    """A stream handler writing ``log_format`` ("text" or "json") lines with request ids."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter(process_name))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT.replace("%(process)d", f"{process_name}[%(process)d]")))
    return handler


def configure_logging(log_format: str, process_name: str = "pulse", level: int = logging.INFO) -> None:
    """Route the root logger (and gunicorn's) through one handler of ``log_format``,
    replacing handlers an earlier call installed."""
    handler = log_handler(log_format, process_name)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "pulse_handler", False)]:
        root.removeHandler(old)
    handler.pulse_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("gunicorn.error", "gunicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
