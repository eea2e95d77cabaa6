"""How the DynamoDB adapter lays out and measures items, and retries batches (pure)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from domain.errors import StoreUnavailable
from domain.events import FACTS_STREAM, Event
from storage.dynamodb import FACT_SHARDS, MAX_EVENT_BYTES, decode_item, encode_item, fact_partition
from storage.dynamodb_base import item_size, retry_unprocessed


def test_a_fact_partition_depends_on_the_id_only_and_is_stable() -> None:
    # crc32 of "a" is 0xe8b7be43; pinned so a Python upgrade cannot move stored facts.
    assert fact_partition("a") == f"F#{0xE8B7BE43 % FACT_SHARDS:02d}" == "F#03"
    assert fact_partition("évènement-1 ☕") == fact_partition("évènement-1 ☕")


def test_fact_partitions_spread_evenly() -> None:
    counts = Counter(fact_partition(f"order-{i}") for i in range(16_000))
    assert len(counts) == FACT_SHARDS
    assert max(counts.values()) < 1.1 * 1000 and min(counts.values()) > 0.9 * 1000


def test_item_size_counts_attribute_names_and_utf8_bytes() -> None:
    assert item_size({"pk": {"S": "F#03"}}) == 2 + 4
    assert item_size({"é": {"S": "☕"}}) == 2 + 3
    # Numbers: one byte per two significant digits plus one; zeros at either end are free.
    assert item_size({"n": {"N": "1795435200000000"}}) == 1 + (len("17954352") + 1) // 2 + 1
    assert item_size({"n": {"N": "0"}}) == 1 + 2
    assert item_size({"n": {"N": "12345"}}) == 1 + 4


def test_item_size_refuses_types_it_cannot_measure() -> None:
    with pytest.raises(ValueError, match="flag"):
        item_size({"flag": {"BOOL": True}})  # type: ignore[dict-item]


def sale(**props: object) -> Event:
    return Event(id="e-1", type="sale", occurred_at=datetime(2026, 11, 23, 12, tzinfo=UTC), properties=props)


def test_an_item_just_over_the_limit_is_measured_over_it() -> None:
    base = encode_item(sale(blob=""), pk="F#00", sk="e-1", stream_id=FACTS_STREAM, version=None, received_micros=1)
    room = MAX_EVENT_BYTES - item_size(base)
    fits = encode_item(
        sale(blob="x" * room), pk="F#00", sk="e-1", stream_id=FACTS_STREAM, version=None, received_micros=1
    )
    over = encode_item(
        sale(blob="x" * (room + 1)), pk="F#00", sk="e-1", stream_id=FACTS_STREAM, version=None, received_micros=1
    )
    assert item_size(fits) == MAX_EVENT_BYTES
    assert item_size(over) == MAX_EVENT_BYTES + 1


def test_facts_carry_no_index_keys_and_only_aggregate_events_a_version() -> None:
    event = sale(amount=1)
    fact = encode_item(event, pk="F#00", sk=event.id, stream_id=FACTS_STREAM, version=None, received_micros=5)
    assert "gpk" not in fact and "gsk" not in fact
    assert "version" not in fact and "source" not in fact
    aggregate = encode_item(event, pk="S#dash-1", sk="v#0000000001", stream_id="dash-1", version=1, received_micros=5)
    assert "gpk" not in aggregate and "gsk" not in aggregate
    assert decode_item(aggregate).version == 1 and decode_item(aggregate).stream_id == "dash-1"


def test_unprocessed_items_are_resent_until_none_are_left() -> None:
    sent: list[int] = []

    def send(request: dict) -> dict:
        items = request["t"]
        sent.append(len(items))
        return {"t": items[: len(items) // 2]} if len(items) > 1 else {}  # half comes back each time

    retry_unprocessed(send, {"t": list(range(25))}, what="writing", base_delay=0.001)
    assert sent == [25, 12, 6, 3, 1]


def test_unprocessed_keys_past_the_deadline_raise_store_unavailable() -> None:
    def send(request: dict) -> dict:
        return request  # throttled: nothing ever gets through

    with pytest.raises(StoreUnavailable, match=r"3 items unprocessed.*same batch again is safe"):
        retry_unprocessed(send, {"t": {"Keys": [1, 2, 3]}}, what="reading", deadline_seconds=0.05, base_delay=0.001)


def test_a_call_refused_for_throttling_is_sent_again_and_other_errors_are_not() -> None:
    calls: list[int] = []

    def throttled_twice(request: dict) -> dict:
        calls.append(len(request["t"]))
        if len(calls) <= 2:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "BatchWriteItem")
        return {}

    retry_unprocessed(throttled_twice, {"t": [1, 2]}, what="writing", base_delay=0.001)
    assert calls == [2, 2, 2]

    def denied(request: dict) -> dict:
        raise ClientError({"Error": {"Code": "AccessDeniedException"}}, "BatchWriteItem")

    with pytest.raises(ClientError, match="AccessDenied"):
        retry_unprocessed(denied, {"t": [1]}, what="writing", base_delay=0.001)
