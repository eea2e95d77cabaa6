"""The Lambda handler with DynamoDB Streams events captured from DynamoDB Local: the real
records of a real stream, wrapped the way Lambda delivers them."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from domain import metrics as defs
from domain.events import Event
from domain.metrics import MetricDefinition
from storage.dynamodb_base import make_client
from storage.dynamodb_feed import Shard, sequence_number
from tests.dynamodb_projections.conftest import DynamoRig
from tests.dynamodb_projections.test_view_store import stored_items
from tests.projections.oracle import (
    all_facts,
    assert_counters_equal,
    assert_views_match_facts,
    expected_counters,
)
from tests.support import lambda_record, real_now
from workers import lambda_handlers
from workers.lambda_handlers import ShardLocator, locate_shard, on_event_stream, run_rebuilds

REVENUE = defs.validate_metric("revenue", "sale", "sum", "amount", ["category"])
BIGGEST = defs.validate_metric("biggest", "sale", "max", "amount")
STOCK = defs.validate_gauge("stock", "stock_level", "level", "product")


def recent_events(n: int, seed: int, prefix: str) -> list[Event]:
    """Facts of the last hours (the handler keeps the default retention: minute cells of
    older facts would expire, and DynamoDB Local does run TTL)."""
    rng = random.Random(seed)
    now = real_now()
    events = []
    for i in range(n):
        occurred = now - timedelta(seconds=rng.randint(60, 6 * 3600), microseconds=rng.randint(0, 999_999))
        if rng.random() < 0.75:
            amount = rng.choice([rng.randint(1, 90), rng.random() * 50])
            props: dict[str, Any] = {"amount": amount, "category": rng.choice(["tea", "coffee"])}
            events.append(Event(id=f"{prefix}{i}", type="sale", occurred_at=occurred, properties=props))
        else:
            props = {"product": rng.choice(["mug", "beans"]), "level": rng.randint(0, 40)}
            events.append(Event(id=f"{prefix}{i}", type="stock_level", occurred_at=occurred, properties=props))
    return events


class Capture:
    """Reads the stream with GetRecords, as Lambda's poller does, and wraps what it reads."""

    def __init__(self, rig: DynamoRig) -> None:
        self.rig = rig
        self.streams = make_client(rig.settings, "dynamodbstreams")
        self.after: str | None = None

    def next_records(self) -> list[dict[str, Any]]:
        (shard,) = self.rig.feed.shards()
        request: dict[str, Any] = {"StreamArn": self.rig.feed.stream_arn, "ShardId": shard.shard_id}
        if self.after is None:
            request["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            request.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=self.after)
        iterator = self.streams.get_shard_iterator(**request)["ShardIterator"]
        records = self.streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
        if records:
            self.after = records[-1]["dynamodb"]["SequenceNumber"]
        return records

    def lambda_event(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The DynamoDB Streams event shape Lambda passes a handler (JSON, as delivered)."""
        wrapped = [lambda_record(raw, self.rig.feed.stream_arn, self.rig.settings.region) for raw in records]
        return json.loads(json.dumps({"Records": wrapped}))

    def close(self) -> None:
        self.streams.close()


@pytest.fixture
def lambda_env(make_dynamo_rig: Callable[..., DynamoRig], monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoRig]:
    """The handler's container configured from PULSE_* variables, as Zappa's would be."""
    rig = make_dynamo_rig("Europe/Paris")
    for name, value in {
        "PULSE_STORE": "dynamodb",
        "PULSE_DYNAMODB_ENDPOINT": rig.settings.dynamodb_endpoint,
        "PULSE_REGION": rig.settings.region,
        "PULSE_TABLE_PREFIX": rig.settings.table_prefix,
        "PULSE_TIMEZONE": "Europe/Paris",
        "PULSE_REBUILD_FENCE_SECONDS": "0.05",
        "PULSE_REBUILD_SETTLE_SECONDS": "0.05",
    }.items():
        monkeypatch.setenv(name, value or "")
    lambda_handlers.reset_runtime()
    yield rig
    lambda_handlers.reset_runtime()


@pytest.fixture
def capture(lambda_env: DynamoRig) -> Iterator[Capture]:
    found = Capture(lambda_env)
    yield found
    found.close()


OK = {"batchItemFailures": []}


def test_captured_stream_events_are_projected_exactly_once(lambda_env: DynamoRig, capture: Capture) -> None:
    rig = lambda_env
    for metric in (REVENUE, BIGGEST):
        defs.define_metric(rig.events, metric)
    defs.define_gauge(rig.events, STOCK)
    rig.events.ingest(recent_events(30, seed=1, prefix="a"))
    first = capture.lambda_event(capture.next_records())
    assert len(first["Records"]) == 33
    assert on_event_stream(first, None) == OK
    rebuilt = run_rebuilds({"detail-type": "Scheduled Event"}, None)["rebuilt"]
    assert rebuilt["metrics"] == ["biggest", "revenue"] and rebuilt["facts"] == 30

    rig.events.ingest(recent_events(30, seed=2, prefix="b"))
    second = capture.lambda_event(capture.next_records())
    assert on_event_stream(second, None) == OK
    once = stored_items(rig)
    assert on_event_stream(first, None) == OK  # Lambda may deliver a batch again
    assert on_event_stream({"Records": second["Records"][10:]}, None) == OK  # or part of it
    assert stored_items(rig) == once
    assert_views_match_facts(rig.views, rig.events, [REVENUE, BIGGEST], [STOCK], "Europe/Paris")

    (shard,) = rig.feed.shards()
    checkpoint = rig.views.checkpoint("metrics", shard.shard_id)
    assert checkpoint.position == int(second["Records"][-1]["dynamodb"]["SequenceNumber"])
    assert checkpoint.events_total == 60


def type_counts_equal(rig: DynamoRig, facts: list, timezone: str) -> None:
    sale = MetricDefinition.builtin_count("sale")
    assert_counters_equal(rig.views, sale, expected_counters(facts, sale, timezone))
    assert rig.views.event_types().get("sale", 0) == sum(1 for f in facts if f.type == "sale")


def test_a_partial_failure_names_the_first_record_not_applied_and_the_retry_completes(
    lambda_env: DynamoRig, capture: Capture
) -> None:
    rig = lambda_env
    rig.events.ingest(recent_events(20, seed=3, prefix="c"))
    records = capture.next_records()
    event = capture.lambda_event(records)
    broken = json.loads(json.dumps(event))
    del broken["Records"][12]["dynamodb"]["NewImage"]  # a record the handler cannot read

    failed_at = broken["Records"][12]["dynamodb"]["SequenceNumber"]
    assert on_event_stream(broken, None) == {"batchItemFailures": [{"itemIdentifier": failed_at}]}
    by_id = {f.id: f for f in all_facts(rig.events)}
    applied = [by_id[r["dynamodb"]["NewImage"]["id"]["S"]] for r in event["Records"][:12]]
    type_counts_equal(rig, applied, "Europe/Paris")

    # Lambda retries from the reported record (here with the record readable again).
    assert on_event_stream({"Records": event["Records"][12:]}, None) == OK
    type_counts_equal(rig, list(by_id.values()), "Europe/Paris")


def test_a_store_failure_fails_the_batch_from_its_first_record(lambda_env: DynamoRig, capture: Capture) -> None:
    rig = lambda_env
    rig.events.ingest(recent_events(5, seed=4, prefix="d"))
    assert on_event_stream(capture.lambda_event(capture.next_records()), None) == OK
    rig.events.ingest(recent_events(5, seed=5, prefix="e"))
    event = capture.lambda_event(capture.next_records())
    client = make_client(rig.settings)
    try:
        client.delete_table(TableName=rig.settings.views_table)  # the views table is gone
    finally:
        client.close()
    first = event["Records"][0]["dynamodb"]["SequenceNumber"]
    assert on_event_stream(event, None) == {"batchItemFailures": [{"itemIdentifier": first}]}


def test_the_locator_asks_the_stream_which_shard_holds_a_record(lambda_env: DynamoRig, capture: Capture) -> None:
    rig = lambda_env
    rig.events.ingest(recent_events(3, seed=6, prefix="f"))
    records = capture.next_records()
    streams = make_client(rig.settings, "dynamodbstreams")
    try:
        locator = ShardLocator(streams)
        (shard,) = rig.feed.shards()
        sequence = records[1]["dynamodb"]["SequenceNumber"]
        assert locator.holds(rig.feed.stream_arn, shard.shard_id, sequence)
        assert not locator.holds(rig.feed.stream_arn, shard.shard_id, sequence_number(int(sequence) + 10_000))
        assert locator.locate(rig.feed.stream_arn, sequence).shard_id == shard.shard_id
    finally:
        streams.close()


def shard(shard_id: str, start: int, end: int | None = None, parent: str | None = None) -> Shard:
    return Shard(shard_id, parent, sequence_number(start), None if end is None else sequence_number(end))


def test_locating_a_record_among_shards_with_overlapping_ranges() -> None:
    shards = [shard("closed", 100, 199), shard("open-a", 200, parent="closed"), shard("open-b", 150)]
    asked: list[str] = []

    def holds(shard_id: str, sequence: str) -> bool:
        asked.append(shard_id)
        return shard_id == "open-b"

    assert locate_shard(shards, "120", holds) == shards[0] and asked == []  # one range holds it
    assert locate_shard(shards, "250", holds) == shards[2]
    assert asked == ["open-a", "open-b"]  # both open ranges hold 250: the stream decides
    assert locate_shard(shards, "50", holds) is None


class LambdaContext:
    """What Lambda passes as ``context``: here only the time left matters."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_a_scheduled_rebuild_longer_than_one_call_carries_on_in_the_next(
    lambda_env: DynamoRig, capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = lambda_env
    monkeypatch.setenv("PULSE_REBUILD_SETTLE_SECONDS", "1.0")
    lambda_handlers.reset_runtime()
    rig.events.ingest(recent_events(15, seed=7, prefix="g"))
    defs.define_metric(rig.events, REVENUE)
    assert on_event_stream(capture.lambda_event(capture.next_records()), None) == OK

    # Too little time left to wait for the fence to settle: registered, not abandoned.
    assert run_rebuilds({}, LambdaContext(2_000)) == {"rebuilt": None, "pending": 1}
    build = rig.views.definitions_state().build
    assert build is not None and build.owner == "lambda-pulse"
    time.sleep(max(0.0, build.fence / 1e6 - real_now().timestamp()) + 0.01)
    rig.events.ingest(recent_events(15, seed=8, prefix="h"))  # counted live into the new generation
    assert on_event_stream(capture.lambda_event(capture.next_records()), None) == OK
    time.sleep(1.0)
    rebuilt = run_rebuilds({}, LambdaContext(60_000))["rebuilt"]
    assert rebuilt["facts"] == 15 and rebuilt["definitionsVersion"] == 1
    assert rig.views.definitions_state().generations["revenue"].gen == build.gen
    assert_views_match_facts(rig.views, rig.events, [REVENUE], [], "Europe/Paris")
