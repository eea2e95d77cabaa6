"""The DynamoDB change feed against DynamoDB Local: what projection workers will read."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from domain.events import FACTS_STREAM, Event
from domain.settings import Settings
from storage.dynamodb import DynamoEventStore
from storage.dynamodb_base import make_client
from storage.dynamodb_feed import ChangeFeed, ChangeRecord, decode_record
from tests.support import lambda_record, real_now


@pytest.fixture
def feed(dynamodb_store: DynamoEventStore, dynamodb_settings: Settings) -> Iterator[ChangeFeed]:
    feed = ChangeFeed.from_settings(dynamodb_settings)
    yield feed
    feed.close()


def fact(n: int, **extra: object) -> Event:
    return Event(
        id=f"f-{n:03d}",
        type="sale" if n % 2 else "page_view",
        occurred_at=datetime(2026, 11, 23, 12, n % 60, tzinfo=UTC),
        source=None if n % 3 else "pos-12",
        properties={"amount": n, "price": n / 4, "gift": n % 2 == 0, "note": None, **extra},
    )


def drain(feed: ChangeFeed, checkpoints: dict[str, str | None]) -> list[ChangeRecord]:
    """Everything after the checkpoints, shard by shard in lineage order; moves them."""
    records: list[ChangeRecord] = []
    for shard in feed.shards():
        reader = feed.reader(shard.shard_id, checkpoints.get(shard.shard_id))
        while batch := reader.read(limit=7):
            records.extend(batch)
        checkpoints[shard.shard_id] = reader.after_sequence
    return records


def test_each_fact_appears_once_as_an_insert_and_a_resend_adds_nothing(
    dynamodb_store: DynamoEventStore, feed: ChangeFeed
) -> None:
    sent = [fact(n) for n in range(30)]
    dynamodb_store.ingest(sent)
    checkpoints: dict[str, str | None] = {}
    records = drain(feed, checkpoints)

    assert [r.event_name for r in records] == ["INSERT"] * 30
    assert Counter(r.event.id for r in records if r.event) == Counter(e.id for e in sent)
    stored = {e.id: e for e in dynamodb_store.read_facts(limit=100).events}
    for _, sequence, event in records:
        assert event is not None
        assert event.event == next(e for e in sent if e.id == event.id)  # every field as sent
        assert event.stream_id == FACTS_STREAM and event.version is None
        assert event.received_at == stored[event.id].received_at
        assert event.position == int(sequence)

    again = dynamodb_store.ingest([fact(3, amount=999), fact(30), fact(7)])
    assert again.duplicate == (True, False, True)
    later = drain(feed, checkpoints)
    assert [(r.event_name, r.event.id if r.event else None) for r in later] == [("INSERT", "f-030")]
    assert drain(feed, checkpoints) == []


def test_aggregate_events_come_through_with_their_stream_and_version(
    dynamodb_store: DynamoEventStore, feed: ChangeFeed
) -> None:
    created = Event(type="dashboard_created", occurred_at=real_now(), properties={"title": "Sales"})
    dynamodb_store.append("dash-1", [created], 0)
    (record,) = drain(feed, {})
    assert record.event_name == "INSERT" and record.event is not None
    assert (record.event.stream_id, record.event.version, record.event.id) == ("dash-1", 1, created.id)
    assert record.event.properties == {"title": "Sales"}


def test_a_reader_resumes_after_a_stored_integer_checkpoint(dynamodb_store: DynamoEventStore, feed: ChangeFeed) -> None:
    dynamodb_store.ingest([fact(n) for n in range(12)])
    everything = drain(feed, {})
    (shard,) = feed.shards()  # a fresh table has one open shard
    # Checkpoints store positions as integers (domain.ports.Checkpoint.position).
    fifth = everything[4].event
    assert fifth is not None and isinstance(fifth.position, int)
    reader = feed.reader(shard.shard_id, after_sequence=fifth.position)
    rest = reader.read()
    assert [r.sequence_number for r in rest] == [r.sequence_number for r in everything[5:]]
    assert reader.after_sequence == everything[-1].sequence_number
    assert not reader.finished  # an open shard never finishes


def expired(iterator: str, minutes: int = 16) -> str:
    """The same DynamoDB Local iterator, issued ``minutes`` ago.

    DynamoDB Local's iterators are ``<arn>|<ver>|base64(<shard>|<sequence>|<issued ms>)``;
    backdating one is the only way to meet a real ExpiredIteratorException in a test
    without waiting 15 minutes. If DynamoDB Local changes the format this fails loudly.
    """
    head, version, blob = iterator.split("|")
    shard, sequence, issued = base64.b64decode(blob + "=" * (-len(blob) % 4)).decode().split("|")
    backdated = f"{int(issued) - minutes * 60_000:0{len(issued)}d}"
    return f"{head}|{version}|{base64.b64encode(f'{shard}|{sequence}|{backdated}'.encode()).decode().rstrip('=')}"


def test_an_expired_iterator_resumes_after_the_checkpoint_without_loss_or_repeat(
    dynamodb_store: DynamoEventStore, feed: ChangeFeed, dynamodb_settings: Settings
) -> None:
    dynamodb_store.ingest([fact(n) for n in range(10)])
    (shard,) = feed.shards()
    reader = feed.reader(shard.shard_id)
    first = reader.read(limit=4)
    assert len(first) == 4 and reader._iterator is not None

    stale = expired(reader._iterator)
    streams = make_client(dynamodb_settings, "dynamodbstreams")
    try:
        with pytest.raises(ClientError, match="ExpiredIteratorException"):
            streams.get_records(ShardIterator=stale)  # DynamoDB Local does refuse it
    finally:
        streams.close()
    reader._iterator = stale
    rest = reader.read()
    ids = [r.event.id for r in first + rest if r.event]
    assert sorted(ids) == sorted(fact(n).id for n in range(10))


def test_a_lambda_event_record_decodes_like_the_polled_record(
    dynamodb_store: DynamoEventStore, feed: ChangeFeed, dynamodb_settings: Settings
) -> None:
    dynamodb_store.ingest([fact(1)])
    (shard,) = feed.shards()
    streams = make_client(dynamodb_settings, "dynamodbstreams")
    try:
        iterator = streams.get_shard_iterator(
            StreamArn=feed.stream_arn, ShardId=shard.shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        (raw,) = streams.get_records(ShardIterator=iterator)["Records"]
    finally:
        streams.close()
    # What Lambda hands a handler: the same record as JSON, with the source ARN added.
    lambda_event_record = json.loads(json.dumps(lambda_record(raw, feed.stream_arn, dynamodb_settings.region)))
    polled = decode_record(raw)
    assert decode_record(lambda_event_record) == polled
    assert polled.event is not None and polled.event.event == fact(1)
