"""The thin baseline `bench/ingest.py` measures Pulse against: the least a durable ingest
endpoint can do on this stack, and nothing more.

A bare Flask app under the same gunicorn (same workers and threads): `json.loads` of the
body, a presence check of id/type/occurredAt per event, one ``INSERT OR IGNORE``
``executemany`` into SQLite (WAL, synchronous=FULL, a unique id) in one transaction, and
a 202 with the number accepted. No auth, no validation beyond presence, no idempotency
report, no projections. Whatever Pulse costs beyond this figure is what its features cost.

    THIN_DB=/tmp/thin.db gunicorn -w 2 --threads 8 'bench.thin_ingest_app:app'
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading

from flask import Flask, Response, request

app = Flask(__name__)
_local = threading.local()
_DB = os.environ.get("THIN_DB", "thin.db")
_REQUIRED = ("id", "type", "occurredAt")


def _connection() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(_DB, isolation_level=None, timeout=60)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, type TEXT NOT NULL,"
            " occurred_at TEXT NOT NULL, body TEXT NOT NULL)"
        )
        _local.conn = conn
    return conn


@app.post("/v1/events")
def ingest() -> Response:
    events = json.loads(request.get_data())["events"]
    rows = []
    for event in events:
        if not all(field in event for field in _REQUIRED):
            return Response('{"error":"missing field"}', status=422, mimetype="application/json")
        rows.append((event["id"], event["type"], event["occurredAt"], json.dumps(event["properties"])))
    conn = _connection()
    conn.execute("BEGIN IMMEDIATE")
    before = conn.total_changes
    conn.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)", rows)
    accepted = conn.total_changes - before
    conn.execute("COMMIT")
    return Response(json.dumps({"accepted": accepted}), status=202, mimetype="application/json")


@app.get("/v1/health")
def health() -> Response:
    return Response('{"status":"ok"}', mimetype="application/json")
