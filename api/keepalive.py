"""A cap on requests per keep-alive connection, as nginx's ``keepalive_requests``.

Why: `pulse serve` runs gunicorn's gthread workers, each with its own GIL. Every worker's
main thread waits on the shared listening socket and the first to wake accepts a new
connection; a kept-alive connection then stays on that worker for its whole life. A few
clients that open their connections at once (a bench's 4 processes, a load balancer's small
pool of upstream connections) can all land on one worker and leave the other idle: one GIL,
about 40,000 events/s instead of 50,000 on 2 cores.

After ``limit`` requests on one connection the server answers ``Connection: close`` and
closes it; the client's next request opens a new connection, and a worker that is idle wins
the race to accept it (its main thread holds no GIL contention), so the load spreads within
a few caps. Every HTTP/1.1 client reconnects on ``Connection: close``.

The header cannot come from the application: gunicorn drops hop-by-hop response headers a
WSGI app sets (``Connection`` included). The request itself is marked instead, in gunicorn's
``pre_request`` server hook, and gunicorn writes ``Connection: close`` and closes after the
response. ``req.req_number`` is gunicorn's count of requests on the connection (1 for the
first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def cap_requests_per_connection(limit: int) -> Callable[[Any, Any], None]:
    """gunicorn's ``pre_request`` hook: the ``limit``-th request on a connection is its last
    (``0``: no cap). Keeps gunicorn's default hook's debug line."""

    def pre_request(worker: Any, req: Any) -> None:
        worker.log.debug("%s %s", req.method, req.path)
        # HTTP/2 streams have no req_number: their connection multiplexes, nothing to cap.
        if limit and getattr(req, "req_number", 0) >= limit:
            req.force_close()

    return pre_request
