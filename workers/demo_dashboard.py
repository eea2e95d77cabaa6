"""The demo's public dashboard, "Coffee shops live": created and published through GraphQL
as an integrator would, readable by anyone without a key once published.

A KPI row (revenue, orders and average basket today, against yesterday), the revenue by
hour with the previous period, revenue by category, the stock per product and the latest
sales, and the products whose ``low-stock`` alert is firing.
"""

from __future__ import annotations

from typing import Any

from workers.demo import ApiError, PulseClient

SLUG = "coffee-shops-live"
NAME = "Coffee shops live"


def _kpi(widget_id: str, title: str, metric: str, x: int, fmt: str) -> dict[str, Any]:
    return {
        "id": widget_id,
        "kind": "KPI",
        "title": title,
        "format": fmt,
        "source": {"kind": "SERIES", "metric": metric, "resolution": "DAY", "last": 1, "compareTo": "PREVIOUS_PERIOD"},
        "layout": {"x": x, "y": 0, "w": 4, "h": 2},
    }


WIDGETS: list[dict[str, Any]] = [
    _kpi("revenue-today", "Revenue today", "revenue", 0, "CURRENCY"),
    _kpi("orders-today", "Orders today", "orders", 4, "NUMBER"),
    _kpi("basket-today", "Average basket", "basket", 8, "CURRENCY"),
    {
        "id": "revenue-by-hour",
        "kind": "CHART",
        "title": "Revenue by hour, against the previous hours",
        "chart": "LINE",
        "source": {
            "kind": "SERIES",
            "metric": "revenue",
            "resolution": "HOUR",
            "last": 12,
            "compareTo": "PREVIOUS_PERIOD",
        },
        "layout": {"x": 0, "y": 2, "w": 8, "h": 4},
    },
    {
        "id": "revenue-by-category",
        "kind": "CHART",
        "title": "Revenue by category today",
        "chart": "DONUT",
        "source": {"kind": "BREAKDOWN", "metric": "revenue", "dimension": "category", "resolution": "DAY", "top": 5},
        "layout": {"x": 8, "y": 2, "w": 4, "h": 4},
    },
    {
        "id": "stock",
        "kind": "TABLE",
        "title": "Stock per product",
        "source": {"kind": "GAUGE", "gauge": "stock"},
        "columns": [
            {"field": "key", "label": "Product", "format": "TEXT"},
            {"field": "value", "label": "In stock", "format": "NUMBER"},
        ],
        "layout": {"x": 0, "y": 6, "w": 6, "h": 5},
    },
    {
        "id": "latest-sales",
        "kind": "RECENT_EVENTS",
        "title": "Latest sales",
        "source": {"kind": "RECENT_EVENTS", "eventType": "sale", "limit": 10},
        "layout": {"x": 6, "y": 6, "w": 6, "h": 5},
    },
    {
        "id": "stock-alerts",
        "kind": "ALERTS",
        "title": "Low stock alerts",
        "source": {"kind": "ALERTS", "rules": ["low-stock"]},
        "layout": {"x": 0, "y": 11, "w": 12, "h": 3},
    },
]

CREATE = "mutation($input: DashboardInput!) { createDashboard(input: $input) { slug streamVersion } }"
PUBLISH = "mutation($slug: String!, $notes: String) { publishDashboard(slug: $slug, releaseNotes: $notes) { version } }"


def publish_dashboard(client: PulseClient) -> list[str]:
    """Create and publish the dashboard; one that exists already is kept as it is."""
    spec = {
        "slug": SLUG,
        "name": NAME,
        "description": "Three coffee shops, live: sales, stock and the latest orders, updated as they happen.",
        "tags": ["demo", "coffee"],
        "visibility": "PUBLIC",
        "widgets": WIDGETS,
    }
    try:
        client.graphql(CREATE, {"input": spec})
    except ApiError as exc:
        if "already exists" not in str(exc):
            raise
        return [f"kept dashboard {SLUG} (already exists)"]
    client.graphql(PUBLISH, {"slug": SLUG, "notes": "Created by pulse demo"})
    return [f"published dashboard {SLUG}: public, readable without a key"]
