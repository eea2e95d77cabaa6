"""`pulse demo`: a small coffee business streaming into a running Pulse over HTTP.

Three shops sell coffee, pastries, sandwiches and merch (``sale``: amount, category,
store, product, quantity), the web site gets visits (``page_view``: path, referrer),
and the tills report stock after each sale and at restocks (``stock_level``: product,
level). A few events arrive late (occurred up to 90 minutes ago) and a few are sent
twice with the same id, as a flaky connection would: Pulse acknowledges those as
duplicates and counts them once.

Everything goes through the public API: ``POST /v1/events`` and GraphQL mutations for the
metric and gauge definitions, exactly as an integrator would do it.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

MENU: dict[str, list[tuple[str, float]]] = {
    "coffee": [("espresso", 2.8), ("latte", 4.2), ("cappuccino", 3.9), ("cold-brew", 4.5)],
    "pastry": [("croissant", 2.5), ("muffin", 3.1), ("cinnamon-roll", 3.4)],
    "sandwich": [("club", 7.5), ("veggie", 6.9), ("tuna-melt", 7.2)],
    "merch": [("mug", 12.0), ("beans-250g", 9.5)],
}
CATEGORY_WEIGHTS = {"coffee": 55, "pastry": 25, "sandwich": 15, "merch": 5}
STORES = {"downtown": 5, "harbor": 3, "campus": 2}
PATHS = {"/": 30, "/menu": 25, "/order": 15, "/locations": 12, "/gift-cards": 5, "/about": 5}
REFERRERS = ["google", "instagram", "direct", "newsletter"]
FULL_STOCK = 60
LATE_SHARE = 0.03
DUPLICATE_SHARE = 0.02

#: What the demo defines, as GraphQL inputs.
METRICS = [
    {
        "name": "revenue",
        "eventType": "sale",
        "aggregation": "SUM",
        "valueProperty": "amount",
        "dimensions": ["category", "store"],
        "decimals": 2,
    },
    {"name": "orders", "eventType": "sale", "aggregation": "COUNT", "dimensions": ["store"]},
    {
        "name": "basket",
        "eventType": "sale",
        "aggregation": "AVG",
        "valueProperty": "amount",
        "dimensions": ["store"],
        "decimals": 2,
    },
]
GAUGES = [{"name": "stock", "eventType": "stock_level", "valueProperty": "level", "keyProperty": "product"}]


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class DemoStream:
    """Generates the business's events as wire dicts for ``POST /v1/events``."""

    rng: random.Random = field(default_factory=random.Random)
    stock: dict[str, int] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for products in MENU.values():
            for product, _ in products:
                self.stock.setdefault(product, FULL_STOCK)

    def _event(self, type_: str, occurred: datetime, source: str, **properties: Any) -> dict[str, Any]:
        return {
            "id": uuid.uuid4().hex,
            "type": type_,
            "occurredAt": _iso(occurred),
            "source": source,
            "properties": properties,
        }

    def _sale(self, occurred: datetime) -> list[dict[str, Any]]:
        category = _pick(self.rng, CATEGORY_WEIGHTS)
        product, price = self.rng.choice(MENU[category])
        store = _pick(self.rng, STORES)
        quantity = self.rng.choices([1, 2, 3], weights=[80, 15, 5])[0]
        sale = self._event(
            "sale",
            occurred,
            f"pos-{store}",
            amount=round(price * quantity, 2),
            category=category,
            store=store,
            product=product,
            quantity=quantity,
        )
        self.stock[product] -= quantity
        restocked = self.stock[product] < 5
        if restocked:
            self.stock[product] = FULL_STOCK
        level = self._event("stock_level", occurred, f"pos-{store}", product=product, level=self.stock[product])
        return [sale, level] if restocked or self.rng.random() < 0.3 else [sale]

    def _page_view(self, occurred: datetime) -> dict[str, Any]:
        return self._event(
            "page_view", occurred, "web", path=_pick(self.rng, PATHS), referrer=self.rng.choice(REFERRERS)
        )

    def batch(self, n: int, now: datetime) -> list[dict[str, Any]]:
        """About ``n`` events happening now, a few of them late, a few resent."""
        out: list[dict[str, Any]] = []
        while len(out) < n:
            occurred = now
            if self.rng.random() < LATE_SHARE:
                occurred = now - timedelta(minutes=self.rng.uniform(2, 90))
            if self.sent and self.rng.random() < DUPLICATE_SHARE:
                out.append(self.rng.choice(self.sent[-200:]))
            elif self.rng.random() < 0.5:
                out.extend(self._sale(occurred))
            else:
                out.append(self._page_view(occurred))
        self.sent.extend(out)
        del self.sent[:-1000]
        return out

    def history(self, hours: float, now: datetime, per_hour: int = 120) -> list[dict[str, Any]]:
        """The last ``hours`` of business, so hourly series have a shape from the start."""
        out: list[dict[str, Any]] = []
        total = int(hours * per_hour)
        for i in range(total):
            occurred = now - timedelta(hours=hours) + timedelta(hours=hours) * (i / max(total, 1))
            out.extend(self._sale(occurred) if self.rng.random() < 0.5 else [self._page_view(occurred)])
        return out


class ApiError(Exception):
    """Pulse answered with an error (or not at all)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class PulseClient:
    """The two calls the demo needs, over plain HTTP (stdlib only)."""

    url: str
    key: str | None = None
    timeout: float = 10.0

    def _post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(
            self.url.rstrip("/") + path, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                return exc.code, json.loads(payload or b"{}")
            except ValueError:
                return exc.code, {"message": payload.decode(errors="replace")}
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(f"cannot reach Pulse at {self.url}: {exc}") from exc

    def post_events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        status, body = self._post("/v1/events", {"events": events})
        if status != 202:
            raise ApiError(f"POST /v1/events answered {status}: {body.get('message', body)}", status=status)
        return body

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        status, body = self._post("/graphql", {"query": query, "variables": variables or {}})
        errors = body.get("errors")
        if errors:
            first = errors[0]
            code = (first.get("extensions") or {}).get("code")
            raise ApiError(first.get("message", str(first)), status=status, code=code)
        if status != 200:
            raise ApiError(f"/graphql answered {status}: {body}", status=status)
        return body["data"]


DEFINE_METRIC = "mutation($input: MetricInput!) { defineMetric(input: $input) { name version } }"
DEFINE_GAUGE = "mutation($input: GaugeInput!) { defineGauge(input: $input) { name version } }"
TODAY_REVENUE = '{ series(metric: "revenue", resolution: DAY, last: 1) { points { value count } } }'


def needs_key(client: PulseClient) -> bool:
    """Whether the server refuses a keyless read (auth on)."""
    try:
        client.graphql("{ metrics { name } }")
    except ApiError as exc:
        if exc.code == "UNAUTHENTICATED" or exc.status == 401:
            return True
        raise
    return False


def wait_for_key(client: PulseClient, timeout: float = 10.0) -> None:
    """Servers pick up a new key within about a second; wait until this one works."""
    deadline = time.monotonic() + timeout
    while needs_key(client):
        if time.monotonic() > deadline:
            raise ApiError("the server does not accept the new key: is it using the same --db / PULSE_DB?")
        time.sleep(0.2)


def define_all(client: PulseClient) -> list[str]:
    """Define the demo's metrics and gauge; those that exist already are kept."""
    done = []
    for query, inputs in ((DEFINE_METRIC, METRICS), (DEFINE_GAUGE, GAUGES)):
        for spec in inputs:
            try:
                client.graphql(query, {"input": spec})
                done.append(f"defined {spec['name']}")
            except ApiError as exc:
                if "already exists" not in str(exc):
                    raise
                done.append(f"kept {spec['name']} (already defined)")
    return done


@dataclass
class DemoTotals:
    posted: int = 0
    accepted: int = 0
    duplicates: int = 0


def run_stream(
    client: PulseClient,
    stream: DemoStream,
    rate: float,
    duration: float,
    report: Callable[[DemoTotals, float], None],
    ticks_per_second: int = 4,
) -> DemoTotals:
    """Post about ``rate`` events per second for ``duration`` seconds (0: until interrupted)."""
    totals = DemoTotals()
    started = time.monotonic()
    tick = 1.0 / ticks_per_second
    owed = 0.0
    next_report = started + 1.0
    while duration <= 0 or time.monotonic() - started < duration:
        owed += rate * tick
        n = int(owed)
        if n:
            owed -= n
            events = stream.batch(n, datetime.now(UTC))
            result = client.post_events(events)
            totals.posted += len(events)
            totals.accepted += result["accepted"]
            totals.duplicates += result["duplicates"]
        now = time.monotonic()
        if now >= next_report:
            report(totals, now - started)
            next_report = now + 1.0
        time.sleep(max(0.0, tick - (time.monotonic() - now)))
    return totals
