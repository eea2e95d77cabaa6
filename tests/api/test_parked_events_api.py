"""Parked events through GraphQL and `pulse parked`: listing needs read, retrying and
dropping admin; a retry applies the event once (a second one is NOT_FOUND), a drop forgets
it; `projections` shows the parked count."""

from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner
from flask.testing import FlaskClient

from bootstrap import Pulse, WorkerOptions
from domain.clock import FrozenClock, now_utc
from domain.events import Event
from projections.recent import RecentEventsProjection
from services.engine import ProjectionEngine, ReadModelHandler
from tests.api.conftest import Keys, bearer, http_layer_only


class Broken(RecentEventsProjection):
    """The recent-events feed as a faulty release had it: raises on a sale without an amount."""

    def project(self, events):
        for event in events:
            if "amount" not in event.properties:
                raise KeyError("amount")
        return super().project(events)


def park_two(pulse: Pulse, clock: FrozenClock) -> None:
    at = now_utc(clock) - timedelta(minutes=3)
    pulse.store.ingest(
        [
            Event(id="ok", type="sale", occurred_at=at, properties={"amount": 1}),
            Event(id="no-amount-1", type="sale", occurred_at=at, properties={}),
            Event(id="no-amount-2", type="sale", occurred_at=at, properties={"note": "x"}),
        ]
    )
    handlers = [
        ReadModelHandler(Broken(), pulse.backend.recent) if h.name == "recent-events" else h
        for h in pulse.backend.handlers(WorkerOptions())
    ]
    engine = ProjectionEngine(handlers, retry_seconds=0, parked=pulse.parked, retries=1)
    try:
        pulse.backend.worker(engine, WorkerOptions(), clock).catch_up()
    finally:
        engine.close()  # its alerts handler's delivery thread, before the test's store goes
    assert len(pulse.parked.list()) == 2


def gql(client: FlaskClient, key: str, query: str) -> dict:
    return client.post("/graphql", json={"query": query}, headers=bearer(key)).get_json()


LIST = '{ parkedEvents(projection: "recent-events") { projection eventId eventType attempts error properties } }'
STATUS = "{ projections { name parked } }"


@http_layer_only
def test_graphql_list_retry_drop_and_status(client: FlaskClient, pulse: Pulse, keys: Keys, clock: FrozenClock) -> None:
    park_two(pulse, clock)
    listed = gql(client, keys.read, LIST)["data"]["parkedEvents"]
    assert [(p["eventId"], p["attempts"], p["eventType"]) for p in listed] == [
        ("no-amount-1", 2, "sale"),
        ("no-amount-2", 2, "sale"),
    ]
    assert "KeyError" in listed[0]["error"] and listed[1]["properties"] == {"note": "x"}
    assert {p["name"]: p["parked"] for p in gql(client, keys.read, STATUS)["data"]["projections"]} == {
        "metrics": 0,
        "recent-events": 2,
    }

    retry = 'mutation { retryParked(projection: "recent-events", eventId: "no-amount-1") { applied error } }'
    refused = gql(client, keys.read, retry)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert gql(client, keys.admin, retry)["data"]["retryParked"] == {"applied": True, "error": None}
    assert "no-amount-1" in [e.id for e in pulse.recent.recent_events("sale", 10)]
    again = gql(client, keys.admin, retry)
    assert again["errors"][0]["extensions"]["code"] == "NOT_FOUND"

    drop = 'mutation { dropParked(projection: "recent-events", eventId: "no-amount-2") { eventId } }'
    assert gql(client, keys.admin, drop)["data"]["dropParked"] == {"eventId": "no-amount-2"}
    assert gql(client, keys.read, LIST)["data"]["parkedEvents"] == []
    assert "no-amount-2" not in [e.id for e in pulse.recent.recent_events("sale", 10)]
    assert {p["name"]: p["parked"] for p in gql(client, keys.read, STATUS)["data"]["projections"]}["recent-events"] == 0

    unknown = 'mutation { retryParked(projection: "nope", eventId: "x") { applied } }'
    assert gql(client, keys.admin, unknown)["errors"][0]["extensions"]["code"] == "NOT_FOUND"


@http_layer_only
def test_the_parked_commands(pulse: Pulse, clock: FrozenClock) -> None:
    from cli import main

    park_two(pulse, clock)
    runner = CliRunner()
    db = ["--db", pulse.settings.db]
    listed = runner.invoke(main, ["parked", "list", *db])
    assert listed.exit_code == 0, listed.output
    assert "recent-events\tno-amount-1\tsale" in listed.output and "KeyError" in listed.output

    retried = runner.invoke(main, ["parked", "retry", "recent-events", "no-amount-1", *db])
    assert retried.exit_code == 0 and "applied no-amount-1" in retried.output
    twice = runner.invoke(main, ["parked", "retry", "recent-events", "no-amount-1", *db])
    assert twice.exit_code == 1 and "no event 'no-amount-1' is parked" in twice.output

    dropped = runner.invoke(main, ["parked", "drop", "recent-events", "no-amount-2", *db])
    assert dropped.exit_code == 0, dropped.output
    empty = runner.invoke(main, ["parked", "list", "--json", *db])
    assert empty.exit_code == 0 and empty.stdout == ""
