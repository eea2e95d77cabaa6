"""Shard lineage order and record decoding of the DynamoDB change feed (pure)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from storage.dynamodb_feed import Shard, decode_record, order_by_lineage, sequence_number


def shard(shard_id: str, start: int, parent: str | None = None, end: int | None = None) -> Shard:
    return Shard(
        shard_id=shard_id,
        parent_shard_id=parent,
        starting_sequence_number=sequence_number(start),
        ending_sequence_number=None if end is None else sequence_number(end),
    )


def ids(shards: list[Shard]) -> list[str]:
    return [s.shard_id for s in shards]


def test_a_chain_is_read_parent_first_whatever_the_listing_order() -> None:
    chain = [shard("a", 100, end=199), shard("b", 200, "a", 299), shard("c", 300, "b")]
    for _ in range(10):
        listed = chain[:]
        random.shuffle(listed)
        assert ids(order_by_lineage(listed)) == ["a", "b", "c"]


def test_a_split_reads_both_children_after_the_parent_and_their_own_children_after_them() -> None:
    # "a" split into "b" and "c"; "c" rolled over into "d". A child may start before a
    # shard of another branch, but never before its own parent.
    shards = [
        shard("d", 150, "c"),
        shard("c", 120, "a", 149),
        shard("b", 110, "a"),
        shard("a", 100, end=109),
    ]
    ordered = ids(order_by_lineage(shards))
    assert ordered[0] == "a"
    assert ordered.index("c") < ordered.index("d")
    assert sorted(ordered) == ["a", "b", "c", "d"]
    assert ordered == ["a", "b", "c", "d"]  # ready shards by starting sequence number


def test_a_trimmed_parent_makes_its_child_a_root_ordered_by_sequence() -> None:
    shards = [shard("late-root", 500), shard("orphan", 300, parent="gone-after-24h"), shard("kid", 600, "orphan")]
    assert ids(order_by_lineage(shards)) == ["orphan", "late-root", "kid"]


def test_a_child_starting_earlier_than_an_unrelated_root_still_waits_for_its_parent() -> None:
    shards = [shard("p", 900, end=999), shard("child", 1000, "p"), shard("other", 950)]
    assert ids(order_by_lineage(shards)) == ["p", "other", "child"]


def test_no_shards_no_order() -> None:
    assert order_by_lineage([]) == []


def test_a_cycle_is_refused_rather_than_dropped() -> None:
    with pytest.raises(ValueError, match="cycle"):
        order_by_lineage([shard("x", 1, "y"), shard("y", 2, "x")])


def test_sequence_numbers_keep_the_width_the_api_requires() -> None:
    assert sequence_number(42) == "000000000000000000042"
    assert sequence_number("000000000000000000042") == "000000000000000000042"
    aws = "4421584500000000017450439091"
    assert sequence_number(int(aws)) == aws


def lambda_record(event_name: str, image: dict | None, sequence: str = "000000000000000000007") -> dict:
    change: dict = {"Keys": {"pk": {"S": "F#03"}, "sk": {"S": "e1"}}, "SequenceNumber": sequence}
    if image is not None:
        change["NewImage"] = image
    return {"eventName": event_name, "eventSourceARN": "arn:aws:dynamodb:...", "dynamodb": change}


IMAGE = {
    "pk": {"S": "F#03"},
    "sk": {"S": "e1"},
    "id": {"S": "e1"},
    "type": {"S": "sale"},
    "occurredAt": {"N": "1795435200000000"},
    "receivedAt": {"N": "1795435201000000"},
    "properties": {"S": '{"amount":19.99,"gift":true,"coupon":null}'},
    "streamId": {"S": "$facts"},
}


def test_a_lambda_insert_record_decodes_to_the_recorded_event() -> None:
    name, sequence, event = decode_record(lambda_record("INSERT", IMAGE))
    assert (name, sequence) == ("INSERT", "000000000000000000007")
    assert event is not None
    assert event.id == "e1" and event.type == "sale" and event.source is None
    assert event.occurred_at == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert dict(event.properties) == {"amount": 19.99, "gift": True, "coupon": None}
    assert event.position == 7 and event.version is None and event.stream_id == "$facts"


def test_a_remove_record_has_no_event() -> None:
    assert decode_record(lambda_record("REMOVE", None)) == ("REMOVE", "000000000000000000007", None)


def test_an_insert_without_a_new_image_names_the_stream_setting() -> None:
    with pytest.raises(ValueError, match="NewImage"):
        decode_record(lambda_record("INSERT", None))


def test_an_unknown_event_name_is_refused() -> None:
    with pytest.raises(ValueError, match="UPSERT"):
        decode_record(lambda_record("UPSERT", IMAGE))
