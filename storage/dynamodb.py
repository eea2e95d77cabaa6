"""The event store on DynamoDB: one events table for facts and aggregate streams.

Layout of the events table (keys ``pk``/``sk``, both strings):

- a fact:           pk ``F#<shard>``, sk ``<event id>``. The shard is a stable hash of the id
  modulo 16, so writes spread over 16 partitions and the key depends on the id alone:
  idempotency is by id, whatever else a resend changes.
- an aggregate event: pk ``S#<stream id>``, sk ``v#<version, 10 digits>``; one partition per
  aggregate, versions in key order.

The table has no secondary index: facts are read back in Scan order (``read_facts``,
for rebuilds and replay) and as NEW_IMAGE records of its stream, which feeds the
projection workers (``storage/dynamodb_feed.py``).

Every attribute is a string or a number: ``properties`` is JSON text written by
``storage.codec`` so ints, floats, bools, None and unicode round-trip exactly (DynamoDB's
own numbers would turn floats into Decimals and cap precision at 38 digits).

Why boto3 rather than pynamodb here: table names are runtime settings (a prefix per
deployment and per test) while a pynamodb Model binds its table name, endpoint and a
cached connection to the class; its ``create_table`` is not idempotent once TTL is on
(a second UpdateTimeToLive is rejected) and races with a concurrent creator; and every
data path needs the low-level batch and transaction calls (UnprocessedItems, cancellation
reasons, request tokens). So the one definition of each table is the CreateTable request
below, and the items are built and read by the two functions next to it.
"""

from __future__ import annotations

import json
import random
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from domain.errors import ConcurrencyError, EventTooLarge, FieldError, StoreUnavailable, ValidationError
from domain.events import (
    FACTS_STREAM,
    Event,
    FactPage,
    IngestResult,
    Payload,
    RecordedEvent,
    conflicting_ids,
    payload,
    utc_now,
)
from domain.micros import epoch_micros
from domain.settings import Settings
from storage.codec import dumps, loads
from storage.dynamodb_base import (
    BATCH_GET_KEYS,
    BATCH_WRITE_ITEMS,
    MAX_ITEM_BYTES,
    MAX_PARTITION_KEY_BYTES,
    MAX_SORT_KEY_BYTES,
    TTL_ATTRIBUTE,
    WRITE_DEADLINE_SECONDS,
    Table,
    WriterPool,
    chunked,
    error_code,
    item_size,
    make_client,
)

Item = dict[str, dict[str, str]]

MAX_EVENT_BYTES = MAX_ITEM_BYTES
# DynamoDB's limits on one TransactWriteItems (the others are in storage.dynamodb_base).
MAX_TRANSACTION_ITEMS = 100
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
MAX_FACT_ID_BYTES = MAX_SORT_KEY_BYTES  # a fact's sk is its id

FACT_SHARDS = 16
_RETRYABLE_CANCELLATIONS = {"None", "TransactionConflict", "ThrottlingError"}

# Writer threads per store: DynamoDB Local does ~650 puts/s on a stream table when fed
# by 8 concurrent BatchWriteItem calls (2 cores), several times what one caller gets.
WRITE_THREADS = 8


# ---------------------------------------------------------------------------- tables


def _key_schema(hash_key: str, range_key: str) -> list[dict[str, str]]:
    return [{"AttributeName": hash_key, "KeyType": "HASH"}, {"AttributeName": range_key, "KeyType": "RANGE"}]


def events_table_definition(table_name: str) -> dict[str, Any]:
    """The CreateTable request of the events table: the one definition of its schema."""
    return {
        "TableName": table_name,
        "KeySchema": _key_schema("pk", "sk"),
        "AttributeDefinitions": [{"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk")],
        "BillingMode": "PAY_PER_REQUEST",
        # Projection workers consume the stream; they only need the item as written.
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    }


def views_table_definition(table_name: str) -> dict[str, Any]:
    """The CreateTable request of the read-model table (projections own its items)."""
    return {
        "TableName": table_name,
        "KeySchema": _key_schema("pk", "sk"),
        "AttributeDefinitions": [{"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk")],
        "BillingMode": "PAY_PER_REQUEST",
    }


_WAIT = {"Delay": 1, "MaxAttempts": 300}


def _enable_ttl(client: BaseClient, table_name: str) -> None:
    # UpdateTimeToLive rejects enabling twice (AWS and DynamoDB Local alike), so look first.
    status = client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    if status.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )


def create_tables(settings: Settings) -> list[str]:
    """Create the events and views tables unless they exist; wait until both are ACTIVE."""
    client = make_client(settings)
    try:
        for definition in (
            events_table_definition(settings.events_table),
            views_table_definition(settings.views_table),
        ):
            try:
                client.create_table(**definition)
            except ClientError as exc:
                # Existing tables (or a concurrent creator's) are left alone.
                if error_code(exc) != "ResourceInUseException":
                    raise
            client.get_waiter("table_exists").wait(TableName=definition["TableName"], WaiterConfig=_WAIT)
        for name in (settings.events_table, settings.views_table):
            _enable_ttl(client, name)  # the views' minute and hour cells expire by TTL
    finally:
        client.close()
    return [settings.events_table, settings.views_table]


def drop_tables(settings: Settings) -> None:
    """Delete both tables, data and all; missing tables are fine."""
    client = make_client(settings)
    try:
        for name in (settings.events_table, settings.views_table):
            try:
                client.delete_table(TableName=name)
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
            client.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig=_WAIT)
    finally:
        client.close()


# ----------------------------------------------------------------------------- items


def fact_partition(event_id: str) -> str:
    """``F#NN``: crc32 is stable across processes and Python versions (``hash`` is not)."""
    return f"F#{zlib.crc32(event_id.encode()) % FACT_SHARDS:02d}"


def version_key(version: int) -> str:
    return f"v#{version:010d}"


def encode_item(
    event: Event,
    *,
    pk: str,
    sk: str,
    stream_id: str,
    version: int | None,
    received_micros: int,
) -> Item:
    """The stored form of one event; ``decode_item`` reads it back."""
    item: Item = {
        "pk": {"S": pk},
        "sk": {"S": sk},
        "id": {"S": event.id},
        "type": {"S": event.type},
        "occurredAt": {"N": str(epoch_micros(event.occurred_at))},
        "receivedAt": {"N": str(received_micros)},
        "properties": {"S": dumps(dict(event.properties))},
        "streamId": {"S": stream_id},
    }
    if event.source is not None:
        item["source"] = {"S": event.source}
    if version is not None:
        item["version"] = {"N": str(version)}
    return item


def decode_item(item: Mapping[str, Mapping[str, Any]], position: int | None = None) -> RecordedEvent:
    """An event from its stored item, as a Query/Scan or a stream record's NewImage has it."""
    source = item.get("source")
    version = item.get("version")
    text = item["properties"]["S"]
    return RecordedEvent.at_micros(
        id=item["id"]["S"],
        type=item["type"]["S"],
        occurred_micros=int(item["occurredAt"]["N"]),
        properties=loads(text),
        source=None if source is None else source["S"],
        stream_id=item["streamId"]["S"],
        version=None if version is None else int(version["N"]),
        position=position,
        received_micros=int(item["receivedAt"]["N"]),
        properties_json=text,
    )


def _item_payload(item: Mapping[str, Mapping[str, Any]]) -> Payload:
    source = item.get("source")
    return payload(
        item["type"]["S"],
        int(item["occurredAt"]["N"]),
        None if source is None else source["S"],
        loads(item["properties"]["S"]),
    )


def _utf8_len(text: str) -> int:
    return len(text.encode())


# ----------------------------------------------------------------------------- store


class DynamoEventStore:
    """``EventStore`` on the DynamoDB events table described in this module's docstring."""

    max_event_bytes = MAX_EVENT_BYTES

    def __init__(
        self,
        client: BaseClient,
        table_name: str,
        *,
        write_threads: int = WRITE_THREADS,
        write_deadline_seconds: float = WRITE_DEADLINE_SECONDS,
    ) -> None:
        self._table = Table(client, table_name, write_deadline_seconds=write_deadline_seconds)
        self.table_name = table_name
        self._pool = WriterPool(write_threads, "pulse-dynamodb")

    @classmethod
    def from_settings(cls, settings: Settings) -> DynamoEventStore:
        return cls(make_client(settings), settings.events_table)

    # -- facts

    def _fact_items(self, events: Sequence[Event]) -> list[Item]:
        """Every item of the batch, checked; raises before anything is written."""
        received = epoch_micros(utc_now())
        items: list[Item] = []
        problems: list[FieldError] = []
        for index, event in enumerate(events):
            id_bytes = _utf8_len(event.id)
            if id_bytes == 0:
                problems.append(FieldError("id", "must not be empty", index))
            elif id_bytes > MAX_FACT_ID_BYTES:
                problems.append(
                    FieldError("id", f"is {id_bytes} bytes; at most {MAX_FACT_ID_BYTES} bytes (UTF-8)", index)
                )
            item = encode_item(
                event,
                pk=fact_partition(event.id),
                sk=event.id,
                stream_id=FACTS_STREAM,
                version=None,
                received_micros=received,
            )
            size = item_size(item)
            if size > MAX_EVENT_BYTES:
                raise EventTooLarge(event.id, size, MAX_EVENT_BYTES, index=index)
            items.append(item)
        if problems:
            raise ValidationError(problems)
        return items

    def _existing(self, keys: list[Item]) -> dict[str, Payload]:
        """The payload of each of ``keys`` already stored, by id: the items' payload
        attributes are read so a resend with another payload is reported as a conflict."""

        def fetch(chunk: Sequence[Item]) -> list[Item]:
            # Consistent: a resend right after the first write must see it.
            return self._table.batch_get(
                chunk,
                "checking for duplicates",
                ProjectionExpression="sk, #type, occurredAt, #source, properties",
                ExpressionAttributeNames={"#type": "type", "#source": "source"},
                ConsistentRead=True,
            )

        return {
            item["sk"]["S"]: _item_payload(item)
            for found in self._pool.each(fetch, chunked(keys, BATCH_GET_KEYS))
            for item in found
        }

    def _put_all(self, items: list[Item]) -> None:
        def write(chunk: Sequence[Item]) -> None:
            self._table.batch_write([{"PutRequest": {"Item": item}} for item in chunk], "writing facts")

        self._pool.each(write, chunked(items, BATCH_WRITE_ITEMS))

    def ingest(self, events: Sequence[Event]) -> IngestResult:
        """Store facts idempotently by id.

        Every item is built and checked (size, key lengths) before anything is written:
        ``EventTooLarge``/``ValidationError`` leave the table untouched. Then ids already
        stored are found with BatchGetItem and only new ones are written with
        BatchWriteItem, 25 per call on a few threads.

        DynamoDB batch writes are not atomic. When a call keeps failing, ``StoreUnavailable``
        is raised with part of the batch possibly written; retrying the same batch is
        safe, since ids already written come back as duplicates. Two concurrent ingests of
        the same new id may both report it as new (the check and the write are separate
        calls); the second put then rewrites the item, which the change feed shows as a
        MODIFY, so consumers count INSERTs only. Conflicts (a duplicate with another
        payload) are found from the same read: in that race, if the two payloads differ,
        neither is reported as a conflict and the later put's payload is the one kept.
        """
        items = self._fact_items(events)
        ids = tuple(event.id for event in events)
        first_of: dict[str, int] = {}
        for index, event_id in enumerate(ids):
            first_of.setdefault(event_id, index)
        unique = [items[index] for index in first_of.values()]
        existing = self._existing([{"pk": item["pk"], "sk": item["sk"]} for item in unique])
        self._put_all([item for item in unique if item["sk"]["S"] not in existing])
        duplicate = tuple(first_of[event_id] != index or event_id in existing for index, event_id in enumerate(ids))
        # What each repeated id now has stored: the earlier item, else the batch's first.
        stored = {
            event_id: existing[event_id] if event_id in existing else _item_payload(items[first_of[event_id]])
            for event_id, repeated in zip(ids, duplicate, strict=True)
            if repeated
        }
        return IngestResult(ids, duplicate, conflicting_ids(ids, duplicate, lambda i: _item_payload(items[i]), stored))

    def read_facts(self, cursor: str | None = None, limit: int = 1000) -> FactPage:
        """Up to ``limit`` facts in Scan order, resuming exactly after ``cursor``.

        The cursor is DynamoDB's LastEvaluatedKey as JSON. Each Scan asks for at most the
        facts still missing, so the last key it evaluated is never past an unreturned fact;
        scans whose page the filter emptied (aggregate items) go on to the next one, so an
        empty page means the end of the table.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        start = _decode_cursor(cursor)
        items: list[Mapping[str, Any]] = []
        while len(items) < limit:
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "Limit": limit - len(items),
                "FilterExpression": "begins_with(pk, :facts)",
                "ExpressionAttributeValues": {":facts": {"S": "F#"}},
                "ConsistentRead": True,
            }
            if start is not None:
                request["ExclusiveStartKey"] = start
            with self._table.errors("reading facts"):
                response = self._table.client.scan(**request)
            items.extend(response["Items"])
            last = response.get("LastEvaluatedKey")
            if last is None:
                # End of table: resume after the last fact returned (or where we were).
                if items:
                    start = {"pk": items[-1]["pk"], "sk": items[-1]["sk"]}
                break
            start = last
        events = tuple(decode_item(item) for item in items)
        return FactPage(events, None if start is None else json.dumps(start, separators=(",", ":")))

    # -- aggregates

    def _current_version(self, stream_id: str) -> int:
        with self._table.errors("reading a stream's version"):
            response = self._table.client.query(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": _stream_key(stream_id)}},
                ProjectionExpression="sk",
                ScanIndexForward=False,
                Limit=1,
                ConsistentRead=True,
            )
        items = response["Items"]
        return int(items[0]["sk"]["S"].removeprefix("v#")) if items else 0

    def append(self, stream_id: str, events: Sequence[Event], expected_version: int) -> int:
        """Append with one TransactWriteItems: all events or none.

        Each put requires its version to be free (two writers cannot both create version
        n+1); when ``expected_version > 0`` a ConditionCheck also requires that version to
        exist, so appending to a stream that is behind is refused too.
        """
        if stream_id == FACTS_STREAM:
            raise ValueError(f"{FACTS_STREAM} is written with ingest(), not append()")
        if expected_version < 0:
            raise ValueError(f"expected_version must be 0 or more, got {expected_version}")
        pk = _stream_key(stream_id)
        if _utf8_len(pk) > MAX_PARTITION_KEY_BYTES:
            raise ValueError(f"stream id is {_utf8_len(stream_id)} bytes; at most {MAX_PARTITION_KEY_BYTES - 2}")
        if not events:
            actual = self._current_version(stream_id)
            if actual != expected_version:
                raise ConcurrencyError(stream_id, expected_version, actual)
            return expected_version
        check = expected_version > 0
        if len(events) + check > MAX_TRANSACTION_ITEMS:
            raise ValueError(
                f"cannot append {len(events)} events at once: one DynamoDB transaction holds at most"
                f" {MAX_TRANSACTION_ITEMS - check} events here; append them in smaller groups"
            )
        received = epoch_micros(utc_now())
        actions: list[dict[str, Any]] = []
        total = 0
        for index, event in enumerate(events):
            version = expected_version + 1 + index
            item = encode_item(
                event, pk=pk, sk=version_key(version), stream_id=stream_id, version=version, received_micros=received
            )
            size = item_size(item)
            if size > MAX_EVENT_BYTES:
                raise EventTooLarge(event.id, size, MAX_EVENT_BYTES, index=index)
            total += size
            actions.append(
                {"Put": {"TableName": self.table_name, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}
            )
        if total > MAX_TRANSACTION_BYTES:
            raise ValueError(
                f"cannot append {total} bytes at once: a DynamoDB transaction holds at most"
                f" {MAX_TRANSACTION_BYTES} bytes; append the events in smaller groups"
            )
        if check:
            actions.append(
                {
                    "ConditionCheck": {
                        "TableName": self.table_name,
                        "Key": {"pk": {"S": pk}, "sk": {"S": version_key(expected_version)}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                }
            )
        self._transact(actions, stream_id, expected_version)
        return expected_version + len(events)

    def _transact(self, actions: list[dict[str, Any]], stream_id: str, expected_version: int) -> None:
        deadline = time.monotonic() + self._table.write_deadline_seconds
        attempt = 0
        while True:
            cancelled = self._try_transact(actions)
            if cancelled is None:
                return
            codes = {reason.get("Code", "None") for reason in cancelled.response.get("CancellationReasons", [])}
            if "ConditionalCheckFailed" in codes:
                raise ConcurrencyError(stream_id, expected_version, self._actual_or_none(stream_id)) from cancelled
            if not codes <= _RETRYABLE_CANCELLATIONS:
                raise cancelled  # e.g. ValidationError: a request this module got wrong
            # Cancelled by a concurrent transaction on the same items or by throttling:
            # nothing was written, so try again; the conditions are checked afresh.
            if time.monotonic() >= deadline:
                raise StoreUnavailable(
                    f"stream {stream_id!r}: DynamoDB kept cancelling the append ({', '.join(sorted(codes))})"
                ) from cancelled
            time.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))
            attempt += 1

    def _try_transact(self, actions: list[dict[str, Any]]) -> ClientError | None:
        """None when written; the TransactionCanceledException when DynamoDB cancelled it."""
        with self._table.errors("appending"):
            try:
                # A fresh token per attempt: botocore's own resend of this request after a
                # lost response is then a no-op, not a false conflict with our own write.
                self._table.client.transact_write_items(TransactItems=actions, ClientRequestToken=uuid.uuid4().hex)
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                return exc
        return None

    def _actual_or_none(self, stream_id: str) -> int | None:
        try:
            return self._current_version(stream_id)
        except StoreUnavailable:
            return None

    def read_stream(self, stream_id: str, after_version: int | None = None) -> list[RecordedEvent]:
        request = {
            "KeyConditionExpression": "pk = :pk AND sk > :after",
            "ExpressionAttributeValues": {
                ":pk": {"S": _stream_key(stream_id)},
                ":after": {"S": version_key(after_version or 0)},
            },
            "ScanIndexForward": True,
            # Commands read an aggregate to decide what to append next: read its latest writes.
            "ConsistentRead": True,
        }
        return [decode_item(item) for item in self._table.query(request, "reading a stream")]

    # -- lifecycle

    def ping(self) -> None:
        with self._table.errors("describing the table"):
            self._table.client.describe_table(TableName=self.table_name)

    def close(self) -> None:
        self._pool.close()
        self._table.client.close()


def _stream_key(stream_id: str) -> str:
    return f"S#{stream_id}"


def _decode_cursor(cursor: str | None) -> Item | None:
    if not cursor:
        return None
    try:
        key = json.loads(cursor)
        if set(key) == {"pk", "sk"} and all(set(key[k]) == {"S"} and isinstance(key[k]["S"], str) for k in key):
            return key
    except (ValueError, TypeError, AttributeError):
        pass
    raise ValueError(f"cursor {cursor!r} is not one this store returned")
