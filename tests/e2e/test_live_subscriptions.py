"""Live subscriptions over real HTTP streaming against a running `pulse serve`.

SSE (graphql-sse, distinct connections) and multipart (Apollo's protocol) each deliver the
current value, then a push after an ingest; a client that goes away gives its thread
back; the per-process cap answers 503; 50 subscribers to one metric cost one marker read
per interval and one recomputation per change (counted by the server, GET /v1/live);
EventSource-style GET with a stream token works until the key is revoked.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.harness import PULSE, ROOT, answers_health, free_port, run_pulse, wait_until
from tests.support import real_now

pytestmark = pytest.mark.serves

HEARTBEAT = 0.5
INTERVAL = 0.1
#: The issue's promise: an ingest shows up on open streams within a second.
PUSH_DEADLINE = 1.0
#: For everything else (startup, projection of setup data): generous, the machine may be busy.
SLOW = 30.0
SSE = "text/event-stream"
MULTIPART = "multipart/mixed;subscriptionSpec=1.0,application/json"


class Server:
    """`pulse serve` with one gunicorn worker, a temp SQLite db, short heartbeats."""

    def __init__(self, directory: Path, *extra: str) -> None:
        directory.mkdir()
        self.db = directory / "pulse.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "serve.log"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PULSE_HEARTBEAT_SECONDS": str(HEARTBEAT),
            "PULSE_LIVE_INTERVAL_SECONDS": str(INTERVAL),
        }
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [*PULSE, "serve", "--port", str(self.port), "--db", str(self.db), "--workers", "1", *extra],
                cwd=directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self._healthy, f"pulse serve to start: {self.log}")
        created = run_pulse(
            "keys", "create", "--name", "admin", "--scope", "admin", "--db", str(self.db), cwd=directory
        )
        assert created.returncode == 0, created.stderr
        self.admin = created.stdout.strip().splitlines()[-1]
        self.directory = directory
        wait_until(lambda: "errors" not in self.graphql("{ metrics { name } }"), "the admin key to work")

    def _healthy(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        return answers_health(self.url)

    def key(self, name: str, *scopes: str) -> tuple[str, str]:
        """A new key's (id, secret), from the real CLI."""
        options = [item for scope in scopes for item in ("--scope", scope)]
        created = run_pulse("keys", "create", "--name", name, *options, "--db", str(self.db), cwd=self.directory)
        assert created.returncode == 0, created.stderr
        key_id = created.stdout.split("created API key ", 1)[1].split()[0]
        secret = created.stdout.strip().splitlines()[-1]
        # The server picks up new keys within about a second.
        wait_until(lambda: "errors" not in self.graphql("{ metrics { name } }", key=secret), "the new key to work")
        return key_id, secret

    def post(self, *events: dict[str, Any]) -> float:
        """Ingest; returns when the 202 came back (time.monotonic())."""
        response = requests.post(
            f"{self.url}/v1/events",
            json={"events": list(events)},
            headers={"Authorization": f"Bearer {self.admin}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        return time.monotonic()

    def graphql(self, query: str, key: str | None = None) -> dict[str, Any]:
        response = requests.post(
            f"{self.url}/graphql",
            json={"query": query},
            headers={"Authorization": f"Bearer {key or self.admin}"},
            timeout=10,
        )
        return response.json()

    def live(self) -> dict[str, Any]:
        response = requests.get(f"{self.url}/v1/live", headers={"Authorization": f"Bearer {self.admin}"}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class Stream:
    """One subscription over a real HTTP connection; a thread parses what arrives
    (SSE events or multipart parts, heartbeats skipped) into a queue."""

    def __init__(
        self,
        server: Server,
        query: str,
        accept: str = SSE,
        key: str | None = "admin",
        token: str | None = None,
        method: str = "POST",
        variables: dict[str, Any] | None = None,
    ) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=SLOW)
        headers = {"Accept": accept}
        if key:
            headers["Authorization"] = f"Bearer {server.admin if key == 'admin' else key}"
        path, body = "/graphql", None
        if method == "GET":
            params = {"query": query, **({"token": token} if token else {})}
            path = f"/graphql?{urllib.parse.urlencode(params)}"
        else:
            headers["Content-Type"] = "application/json"
            body = json.dumps({"query": query, "variables": variables})
            if token:
                path = f"/graphql?{urllib.parse.urlencode({'token': token})}"
        self.connection.request(method, path, body=body, headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.payloads: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.completed = threading.Event()
        self.heartbeats = 0
        if self.status == 200:
            threading.Thread(target=self._read, args=(accept == SSE,), daemon=True).start()

    def _read(self, sse: bool) -> None:
        try:
            event = None
            while True:
                line = self.response.readline()
                if not line:
                    return
                text = line.decode().rstrip("\r\n")
                if sse:
                    if text.startswith("event: "):
                        event = text[len("event: ") :]
                    elif text.startswith("data: ") and event == "next":
                        self.payloads.put(json.loads(text[len("data: ") :]))
                    elif text.startswith(": ping"):
                        self.heartbeats += 1
                    elif text == "" and event == "complete":
                        self.completed.set()
                elif text.startswith("{"):
                    part = json.loads(text)
                    if "payload" in part:
                        self.payloads.put(part["payload"])
                    else:
                        self.heartbeats += 1
                elif text.startswith("--graphql--"):
                    self.completed.set()
        except Exception:  # the test closed the connection under the reader (http.client races)
            return
        finally:
            self.payloads.put(None)

    def next(self, timeout: float = SLOW) -> dict[str, Any]:
        try:
            payload = self.payloads.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no payload within {timeout} s") from None
        assert payload is not None, "the stream ended"
        return payload

    def until(self, condition: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first payload meeting ``condition`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            payload = self.next(max(deadline - time.monotonic(), 0.001))
            if condition(payload):
                return payload

    def close(self) -> None:
        # Gone without a word, as a closed browser tab: no FIN handshake wait, no complete.
        with contextlib.suppress(OSError):
            if self.connection.sock is not None:
                self.connection.sock.shutdown(2)
        self.connection.close()


def event(kind: str, index: int, at: datetime | None = None, **properties: Any) -> dict[str, Any]:
    """An event that occurred ``at`` (default: now, by the clock `pulse serve` reads too).
    Events a test compares bucket by bucket share one ``at``, so that an hour boundary
    passing while the test runs does not split them between two buckets."""
    return {
        "id": f"{kind}-{index}",
        "type": kind,
        "occurredAt": (at or real_now()).isoformat(),
        "properties": properties,
    }


def series_query(metric: str) -> str:
    return f'subscription {{ seriesUpdated(metric: "{metric}", resolution: HOUR, last: 3) {{ points {{ count }} }} }}'


def total(payload: dict[str, Any]) -> int:
    assert "errors" not in payload, payload
    return sum(point["count"] for point in payload["data"]["seriesUpdated"]["points"])


def projected(server: Server, metric: str, count: int) -> None:
    query = f'{{ series(metric: "{metric}", resolution: HOUR, last: 3) {{ points {{ count }} }} }}'

    def done() -> bool:
        body = server.graphql(query)
        return "errors" not in body and sum(p["count"] for p in body["data"]["series"]["points"]) == count

    wait_until(done, f"{count} {metric} events projected")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("live") / "big", "--threads", "64", "--max-streams", "56")
    yield server
    server.stop()


@pytest.fixture
def streams() -> Iterator[list[Stream]]:
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        stream.close()


def settled(server: Server) -> dict[str, Any]:
    """/v1/live once every stream of earlier tests is gone."""
    return wait_until(
        lambda: (live := server.live())["streams"]["open"] == 0 and not live["watcher"]["running"] and live,
        "earlier streams to be released",
    )


@pytest.mark.parametrize("accept", [SSE, MULTIPART], ids=["sse", "multipart"])
def test_a_subscription_gets_the_current_series_then_an_update_within_a_second_of_an_ingest(
    server: Server, streams: list[Stream], accept: str
) -> None:
    metric = "sse_sale" if accept == SSE else "multipart_sale"
    at = real_now()
    server.post(event(metric, 1, at), event(metric, 2, at))
    projected(server, metric, 2)

    streams.append(stream := Stream(server, series_query(metric), accept))
    assert stream.status == 200
    assert stream.response.getheader("Content-Type").startswith(accept.split(";")[0])
    assert total(stream.next()) == 2

    posted = server.post(event(metric, 3, at))
    pushed = stream.until(lambda payload: total(payload) == 3, timeout=PUSH_DEADLINE)
    assert max(p["count"] for p in pushed["data"]["seriesUpdated"]["points"]) == 3, f"{time.monotonic() - posted:.3f} s"
    assert stream.heartbeats >= 1 if accept == MULTIPART else True  # multipart opens with one


def test_gauges_and_projection_status_are_live_too(server: Server, streams: list[Stream]) -> None:
    defined = server.graphql(
        'mutation { defineGauge(input: {name: "shelf", eventType: "shelf_level", valueProperty: "level",'
        ' keyProperty: "product"}) { name } }'
    )
    assert "errors" not in defined, defined
    server.post(event("shelf_level", 1, product="mug", level=5))
    wait_until(lambda: server.graphql('{ gauges(name: "shelf") { value } }')["data"]["gauges"], "the first reading")

    streams.append(gauge := Stream(server, 'subscription { gaugeUpdated(name: "shelf") { key value } }'))
    streams.append(status := Stream(server, "subscription { projectionStatus { name checkpoint } }", MULTIPART))
    assert gauge.next()["data"]["gaugeUpdated"] == [{"key": "mug", "value": 5.0}]
    checkpoint = int(status.next()["data"]["projectionStatus"][0]["checkpoint"])

    server.post(event("shelf_level", 2, product="mug", level=3))
    assert gauge.next()["data"]["gaugeUpdated"] == [{"key": "mug", "value": 3.0}]
    moved = status.until(lambda p: int(p["data"]["projectionStatus"][0]["checkpoint"]) > checkpoint, timeout=SLOW)
    assert moved["data"]["projectionStatus"][0]["name"] == "metrics"


def test_subscribers_of_one_value_with_different_selections_each_get_their_own_shape(
    server: Server, streams: list[Stream]
) -> None:
    at = real_now()
    server.post(event("shape_sale", 1, at))
    projected(server, "shape_sale", 1)
    counts = series_query("shape_sale")
    values = counts.replace("points { count }", "metric points { value }")
    with_variable = (
        "subscription ($full: Boolean!) {"
        ' seriesUpdated(metric: "shape_sale", resolution: HOUR, last: 3)'
        " { points { count partial @include(if: $full) } } }"
    )
    streams.append(a := Stream(server, counts))
    streams.append(b := Stream(server, values, MULTIPART))
    streams.append(c := Stream(server, with_variable, variables={"full": True}))
    streams.append(d := Stream(server, with_variable, variables={"full": False}))
    for stream in (a, b, c, d):
        stream.next()

    server.post(event("shape_sale", 2, at))
    # Until the push of the second sale (the window may also slide into a new hour first).
    pushed = a.until(lambda p: total(p) == 2, SLOW)["data"]["seriesUpdated"]
    assert [set(point) for point in pushed["points"]] == [{"count"}] * 3
    pushed = b.until(lambda p: sum(q["value"] for q in p["data"]["seriesUpdated"]["points"]) == 2, SLOW)
    assert pushed["data"]["seriesUpdated"]["metric"] == "shape_sale"
    assert [set(point) for point in pushed["data"]["seriesUpdated"]["points"]] == [{"value"}] * 3
    pushed = c.until(lambda p: total(p) == 2, SLOW)["data"]["seriesUpdated"]
    assert [point["partial"] for point in pushed["points"]] == [False, False, True]
    pushed = d.until(lambda p: total(p) == 2, SLOW)["data"]["seriesUpdated"]
    assert [set(point) for point in pushed["points"]] == [{"count"}] * 3


def test_bad_arguments_end_the_stream_with_the_querys_error_not_a_500(server: Server, streams: list[Stream]) -> None:
    for accept in (SSE, MULTIPART):
        streams.append(stream := Stream(server, series_query("no_such_metric"), accept))
        assert stream.status == 200
        error = stream.next()["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["errors"][0]["field"] == "metric"
        assert "unknown metric 'no_such_metric'" in error["message"]
        assert stream.completed.wait(SLOW)

    streams.append(anonymous := Stream(server, series_query("sse_sale"), key=None))
    assert anonymous.next()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_fifty_subscribers_cost_one_marker_read_per_interval_and_one_recomputation_per_change(
    server: Server, streams: list[Stream]
) -> None:
    server.post(event("fifty_sale", 1))
    projected(server, "fifty_sale", 1)
    idle = settled(server)
    time.sleep(5 * INTERVAL)
    assert server.live()["watcher"]["markerReads"] == idle["watcher"]["markerReads"]  # nobody listens: no reads

    before_open = server.live()["watcher"]
    for _ in range(50):
        streams.append(Stream(server, series_query("fifty_sale")))
    assert all(total(stream.next()) == 1 for stream in streams)
    opened = server.live()
    assert (opened["streams"]["open"], opened["watcher"]["subscribers"]) == (50, 50)
    # 50 identical first values: computed far fewer than 50 times.
    assert opened["watcher"]["recomputations"] - before_open["recomputations"] <= 5

    start, started = server.live()["watcher"], time.monotonic()
    time.sleep(20 * INTERVAL)
    end, elapsed = server.live()["watcher"], time.monotonic() - started
    reads = end["markerReads"] - start["markerReads"]
    # One read per interval for all 50 (fewer when the machine is busy); 50 per interval would be ~1000.
    assert 1 <= reads <= elapsed / INTERVAL + 2, (reads, elapsed)

    server.post(event("fifty_sale", 2))
    assert all(total(stream.until(lambda p: total(p) == 2, timeout=SLOW)) == 2 for stream in streams)
    after = server.live()["watcher"]
    assert after["recomputations"] - end["recomputations"] <= 3  # one per change, shared by 50
    # The 50 identical streams are one fan-out group: its leader alone is woken, and writes
    # the push to the 49 others' sockets (members waking on their own timers meanwhile
    # may add a few wake-ups, never one per subscriber).
    assert after["groups"] == 1
    assert after["fannedOut"] - end["fannedOut"] >= 49
    assert after["wakeups"] - end["wakeups"] <= 5


def test_when_the_stream_that_writes_for_its_group_leaves_the_others_still_get_every_push(
    server: Server, streams: list[Stream]
) -> None:
    server.post(event("crowd_sale", 1))
    projected(server, "crowd_sale", 1)
    settled(server)
    for _ in range(3):  # one after the other: the first to push leads its group
        streams.append(Stream(server, series_query("crowd_sale")))
        assert total(streams[-1].next()) == 1
    assert server.live()["watcher"]["groups"] == 1

    streams[0].close()
    wait_until(lambda: server.live()["watcher"]["subscribers"] == 2, "the leader's stream to be released")
    before = server.live()["watcher"]["fannedOut"]
    server.post(event("crowd_sale", 2))
    assert [total(stream.until(lambda p: total(p) == 2, timeout=SLOW)) for stream in streams[1:]] == [2, 2]
    server.post(event("crowd_sale", 3))
    assert [total(stream.until(lambda p: total(p) == 3, timeout=SLOW)) for stream in streams[1:]] == [3, 3]
    assert server.live()["watcher"]["fannedOut"] - before >= 2  # the new leader wrote both for the other


def test_a_client_that_goes_away_gives_its_thread_back(server: Server, streams: list[Stream]) -> None:
    server.post(event("leaving_sale", 1))
    projected(server, "leaving_sale", 1)
    base = settled(server)["streams"]["open"]
    stream = Stream(server, series_query("leaving_sale"))
    assert total(stream.next()) == 1
    assert server.live()["streams"]["open"] == base + 1

    stream.close()
    gone = time.monotonic()
    # The next heartbeat write fails (or the one after: the first may still fit the socket).
    wait_until(
        lambda: (live := server.live())["streams"]["open"] == base and live["watcher"]["subscribers"] == 0,
        "the stream's thread to be released",
        timeout=10 * HEARTBEAT,
    )
    print(f"released {time.monotonic() - gone:.2f} s after the client left (heartbeat {HEARTBEAT} s)")


def test_a_stream_token_lets_eventsource_subscribe_until_its_key_is_revoked(
    server: Server, streams: list[Stream]
) -> None:
    server.post(event("token_sale", 1))
    projected(server, "token_sale", 1)
    key_id, reader = server.key("dashboard", "read")
    issued = server.graphql("mutation { createStreamToken { token expiresAt } }", key=reader)
    token = issued["data"]["createStreamToken"]["token"]
    expires = datetime.fromisoformat(issued["data"]["createStreamToken"]["expiresAt"])
    assert 240 <= (expires - real_now()).total_seconds() <= 310

    streams.append(browser := Stream(server, series_query("token_sale"), key=None, token=token, method="GET"))
    assert total(browser.next()) == 1
    # Only GET takes the token: a POST with it is refused, as is a query-string token elsewhere.
    streams.append(posted := Stream(server, series_query("token_sale"), key=None, token=token))
    assert posted.next()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert requests.get(f"{server.url}/v1/live", params={"token": token}, timeout=10).status_code == 401
    # The token is read-only whatever the key: no mutations with it (GET refuses them anyway).
    streams.append(forged := Stream(server, series_query("token_sale"), key=None, token=token + "x", method="GET"))
    assert "invalid stream token" in forged.next()["errors"][0]["message"]

    revoked = run_pulse("keys", "revoke", key_id, "--db", str(server.db), cwd=server.directory)
    assert revoked.returncode == 0, revoked.stderr

    def refused() -> dict[str, Any] | None:
        stream = Stream(server, series_query("token_sale"), key=None, token=token, method="GET")
        streams.append(stream)
        payload = stream.next()
        return payload if "errors" in payload else None

    error = wait_until(refused, "the revoked key's token to be refused")["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED" and "revoked" in error["message"]
    # The stream opened before the revocation ends too.
    ended = browser.until(lambda payload: "errors" in payload, timeout=SLOW)
    assert ended["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert browser.completed.wait(SLOW)


def test_beyond_the_per_process_limit_a_stream_is_refused_with_503_json(tmp_path: Path, streams: list[Stream]) -> None:
    small = Server(tmp_path / "small", "--threads", "6", "--max-streams", "2")
    try:
        small.post(event("capped", 1))
        projected(small, "capped", 1)
        for _ in range(2):
            streams.append(stream := Stream(small, series_query("capped")))
            assert total(stream.next()) == 1

        streams.append(refused := Stream(small, series_query("capped"), MULTIPART))
        assert refused.status == 503
        assert refused.response.getheader("Content-Type") == "application/json"
        assert refused.response.getheader("Retry-After") == "5"
        assert "limit 2" in json.loads(refused.response.read())["message"]
        # Queries still have their threads.
        assert small.graphql("{ health { status } }")["data"]["health"]["status"] == "ok"

        streams[0].close()
        wait_until(lambda: small.live()["streams"]["open"] == 1, "a slot to free up", timeout=10 * HEARTBEAT)
        streams.append(again := Stream(small, series_query("capped")))
        assert again.status == 200 and total(again.next()) == 1
    finally:
        for stream in streams:
            stream.close()
        small.stop()


def test_a_posted_sale_is_in_recent_events_and_its_open_stream_within_a_second(
    server: Server, streams: list[Stream]
) -> None:
    query = 'subscription { recentEventsUpdated(type: "feed_sale", limit: 3) { id type properties } }'
    server.post(event("feed_sale", 1, amount=4.5), event("feed_visit", 1))
    wait_until(
        lambda: (
            [e["id"] for e in server.graphql('{ recentEvents(type: "feed_sale") { id } }')["data"]["recentEvents"]]
            == ["feed_sale-1"]
        ),
        "the first sale in the feed",
    )
    stream = Stream(server, query)
    streams.append(stream)
    first = stream.next()["data"]["recentEventsUpdated"]
    assert [e["id"] for e in first] == ["feed_sale-1"]  # the visit is in its own feed

    posted = server.post(event("feed_sale", 2, amount=12.5))
    pushed = stream.until(lambda p: len(p["data"]["recentEventsUpdated"]) == 2, timeout=PUSH_DEADLINE + 0.5)
    assert time.monotonic() - posted <= PUSH_DEADLINE
    assert pushed["data"]["recentEventsUpdated"][0] == {
        "id": "feed_sale-2",
        "type": "feed_sale",
        "properties": {"amount": 12.5},
    }
    query_answer = server.graphql('{ recentEvents(type: "feed_sale", limit: 3) { id } }')["data"]["recentEvents"]
    assert [e["id"] for e in query_answer] == ["feed_sale-2", "feed_sale-1"]
    every_type = server.graphql("{ recentEvents(limit: 500) { id } }")["data"]["recentEvents"]
    assert {"feed_sale-2", "feed_sale-1", "feed_visit-1"} <= {e["id"] for e in every_type}


def test_recent_events_arguments_are_checked(server: Server) -> None:
    for arguments, field in (("limit: 501", "limit"), ("limit: 0", "limit"), ('type: "Not A Type"', "type")):
        body = server.graphql(f"{{ recentEvents({arguments}) {{ id }} }}")
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["errors"][0]["field"] == field
