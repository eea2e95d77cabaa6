"""The change feed of the DynamoDB events table: its DynamoDB Stream, read shard by shard.

What the projection workers build on (a poller for local runs, a Lambda handler on AWS):

- ``ChangeFeed.from_settings(settings)``: the stream of ``settings.events_table``;
  ``shards()`` lists its shards with every parent before its children, ``reader()`` reads
  one shard from a checkpoint.
- ``ShardReader.read()``: one GetRecords call; keeps ``after_sequence`` (the checkpoint to
  store) and recovers from an expired iterator (they live 15 minutes).
- ``decode_record(record)``: one stream record, from GetRecords or from a Lambda event
  (same shape), as ``ChangeRecord(event_name, sequence_number, event)``.

Order and delivery: records of one item are ordered within a shard, and a child shard
continues where its parent stopped, so reading parents first keeps per-item order.
There is no order across shards, and delivery is at least once: consumers checkpoint per
shard and must be idempotent. Facts are INSERTs; a MODIFY of a fact only happens when two
ingests of the same new id race (see ``DynamoEventStore.ingest``) and must not be counted
again. Records live 24 hours; an older checkpoint raises ``FeedTrimmed``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from domain.errors import PulseError, StoreUnavailable
from domain.events import RecordedEvent
from domain.settings import Settings
from storage.dynamodb import decode_item
from storage.dynamodb_base import error_code, make_client, unavailable

EVENT_NAMES = ("INSERT", "MODIFY", "REMOVE")
MAX_RECORDS_PER_READ = 1000  # GetRecords' own limit
_SEQUENCE_DIGITS = 21  # the shortest sequence number DynamoDB Streams accepts


class FeedTrimmed(PulseError):
    """The checkpoint is older than the stream keeps (24 h): rebuild from the event store."""


class _Change(NamedTuple):
    event_name: str
    sequence_number: str
    event: RecordedEvent | None


class ChangeRecord(_Change):
    """One change to the events table: ``(event_name, sequence_number, event)``.

    ``event`` is the item's new image as a ``RecordedEvent`` whose ``position`` is
    ``int(sequence_number)``; it is None for REMOVE (a NEW_IMAGE stream has no image of
    a deleted item, e.g. one expired by TTL). ``created_at`` is the stream's
    ``ApproximateCreationDateTime`` (epoch seconds), how far behind a reader is; an
    attribute beside the triple, so a record still unpacks and compares as one.
    """

    created_at: float | None = None  # what a copy made by _replace or _make reads

    def __new__(
        cls, event_name: str, sequence_number: str, event: RecordedEvent | None, created_at: float | None = None
    ) -> ChangeRecord:
        record = super().__new__(cls, event_name, sequence_number, event)
        record.created_at = created_at
        return record


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    parent_shard_id: str | None
    starting_sequence_number: str
    ending_sequence_number: str | None  # None while the shard is open (still written to)

    @property
    def is_open(self) -> bool:
        return self.ending_sequence_number is None


def sequence_number(position: int | str) -> str:
    """The sequence number a checkpoint position stands for.

    Positions are ``int(sequence_number)``; DynamoDB Local pads sequence numbers to 21
    digits and the API accepts no shorter ones, so the padding is restored here.
    """
    return f"{int(position):0{_SEQUENCE_DIGITS}d}"


def decode_record(record: Mapping[str, Any]) -> ChangeRecord:
    """A stream record as GetRecords returns it or as a Lambda event carries it:
    ``{"eventName": ..., "dynamodb": {"NewImage": {...}, "SequenceNumber": "..."}, ...}``."""
    event_name = record["eventName"]
    if event_name not in EVENT_NAMES:
        raise ValueError(f"unknown stream event name {event_name!r}; expected one of {', '.join(EVENT_NAMES)}")
    change = record["dynamodb"]
    sequence = change["SequenceNumber"]
    image = change.get("NewImage")
    if image is None and event_name != "REMOVE":
        raise ValueError(f"{event_name} record {sequence} has no NewImage: the stream must include new images")
    event = None if image is None else decode_item(image, position=int(sequence))
    return ChangeRecord(event_name, sequence, event, _epoch_seconds(change.get("ApproximateCreationDateTime")))


def _epoch_seconds(value: Any) -> float | None:
    """GetRecords gives a datetime, a Lambda event epoch seconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    timestamp = getattr(value, "timestamp", None)
    return None if timestamp is None else float(timestamp())


def order_by_lineage(shards: Iterable[Shard]) -> list[Shard]:
    """Every shard after its parent (and so after all its ancestors).

    A shard whose parent is not listed (trimmed after 24 hours) is a root. Among shards
    ready to read, the one with the lowest starting sequence number goes first.
    """
    by_id = {shard.shard_id: shard for shard in shards}
    children: dict[str, list[Shard]] = {}
    ready: list[tuple[int, str]] = []
    for shard in by_id.values():
        if shard.parent_shard_id in by_id and shard.parent_shard_id != shard.shard_id:
            children.setdefault(shard.parent_shard_id, []).append(shard)
        else:
            heapq.heappush(ready, (int(shard.starting_sequence_number), shard.shard_id))
    ordered: list[Shard] = []
    while ready:
        _, shard_id = heapq.heappop(ready)
        ordered.append(by_id[shard_id])
        for child in children.pop(shard_id, []):
            heapq.heappush(ready, (int(child.starting_sequence_number), child.shard_id))
    if children:  # only a cycle can leave shards unplaced, and DynamoDB does not make them
        raise ValueError(f"shard lineage has a cycle among {sorted(s.shard_id for c in children.values() for s in c)}")
    return ordered


#: Re-raised as they are: the reader renews an expired iterator; a ValidationException is a bug.
_PASS_THROUGH = frozenset({"ExpiredIteratorException", "ValidationException", "TrimmedDataAccessException"})


@contextmanager
def _feed_errors(action: str) -> Iterator[None]:
    try:
        with unavailable("DynamoDB Streams", action, passthrough=_PASS_THROUGH):
            yield
    except ClientError as exc:
        if error_code(exc) == "TrimmedDataAccessException":
            raise FeedTrimmed(f"{action}: the checkpoint is older than the stream's 24 h retention") from exc
        raise


def latest_stream_arn(client: BaseClient, table_name: str) -> str:
    """The ARN of the table's current stream (DescribeTable's LatestStreamArn)."""
    with _feed_errors(f"describing table {table_name}"):
        table = client.describe_table(TableName=table_name)["Table"]
    arn = table.get("LatestStreamArn")
    if not arn or not table.get("StreamSpecification", {}).get("StreamEnabled"):
        raise StoreUnavailable(f"table {table_name} has no stream enabled; it must be created by `pulse tables create`")
    return arn


def list_shards(streams_client: BaseClient, stream_arn: str) -> list[Shard]:
    """Every shard of the stream (DescribeStream, paginated), in lineage order."""
    shards: list[Shard] = []
    request: dict[str, Any] = {"StreamArn": stream_arn}
    while True:
        with _feed_errors("describing the stream"):
            description = streams_client.describe_stream(**request)["StreamDescription"]
        for shard in description.get("Shards", []):
            numbers = shard["SequenceNumberRange"]
            shards.append(
                Shard(
                    shard_id=shard["ShardId"],
                    parent_shard_id=shard.get("ParentShardId"),
                    starting_sequence_number=numbers["StartingSequenceNumber"],
                    ending_sequence_number=numbers.get("EndingSequenceNumber"),
                )
            )
        last = description.get("LastEvaluatedShardId")
        if not last:
            return order_by_lineage(shards)
        request["ExclusiveStartShardId"] = last


class ShardReader:
    """Reads one shard after a checkpoint; ``after_sequence`` is the checkpoint to store.

    ``finished`` turns true once a closed shard has been read to its end (move on to its
    children). An open shard never finishes; an empty read only means nothing is there
    yet (on AWS, possibly not even that: keep polling, at most about once a second).
    """

    def __init__(
        self,
        streams_client: BaseClient,
        stream_arn: str,
        shard_id: str,
        after_sequence: str | int | None = None,
    ) -> None:
        self._client = streams_client
        self.stream_arn = stream_arn
        self.shard_id = shard_id
        self.after_sequence = None if after_sequence is None else sequence_number(after_sequence)
        self.finished = False
        self._iterator: str | None = None

    def _new_iterator(self) -> str:
        request: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": self.shard_id}
        if self.after_sequence is None:
            request["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            request["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            request["SequenceNumber"] = self.after_sequence
        with _feed_errors(f"opening shard {self.shard_id}"):
            return self._client.get_shard_iterator(**request)["ShardIterator"]

    def _get_records(self, limit: int) -> dict[str, Any]:
        with _feed_errors(f"reading shard {self.shard_id}"):
            return self._client.get_records(ShardIterator=self._iterator, Limit=limit)

    def read(self, limit: int = MAX_RECORDS_PER_READ) -> list[ChangeRecord]:
        """The next records (at most ``limit``, up to 1,000) after ``after_sequence``."""
        if self.finished:
            return []
        fresh = self._iterator is None
        if fresh:
            self._iterator = self._new_iterator()
        try:
            response = self._get_records(limit)
        except FeedTrimmed:
            if fresh:
                raise
            # DynamoDB Local answers so when records arrive on a shard first opened empty
            # (at TRIM_HORIZON): a fresh iterator from the checkpoint tells whether records
            # were really lost (then it fails too).
            self._iterator = self._new_iterator()
            response = self._get_records(limit)
        except ClientError as exc:
            if error_code(exc) != "ExpiredIteratorException":
                raise
            # Iterators expire after 15 minutes; resume from the checkpoint instead.
            self._iterator = self._new_iterator()
            response = self._get_records(limit)
        records = [decode_record(record) for record in response.get("Records", [])]
        if records:
            self.after_sequence = records[-1].sequence_number
        self._iterator = response.get("NextShardIterator")
        if self._iterator is None:
            self.finished = True  # the shard is closed and read to its end
        return records


class ChangeFeed:
    """The events table's stream: its shards in lineage order and readers for them."""

    def __init__(self, dynamodb_client: BaseClient, streams_client: BaseClient, table_name: str) -> None:
        self._dynamodb = dynamodb_client
        self._streams = streams_client
        self.table_name = table_name
        self._stream_arn: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ChangeFeed:
        return cls(make_client(settings), make_client(settings, "dynamodbstreams"), settings.events_table)

    @property
    def stream_arn(self) -> str:
        if self._stream_arn is None:
            self._stream_arn = latest_stream_arn(self._dynamodb, self.table_name)
        return self._stream_arn

    def shards(self) -> list[Shard]:
        return list_shards(self._streams, self.stream_arn)

    def reader(self, shard_id: str, after_sequence: str | int | None = None) -> ShardReader:
        return ShardReader(self._streams, self.stream_arn, shard_id, after_sequence)

    def close(self) -> None:
        self._dynamodb.close()
        self._streams.close()
