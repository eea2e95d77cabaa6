"""Exactly once, per item: the guarded writes of counter cells, event types and gauges.

Streams and Lambda deliver at least once and shards are processed independently, so
there is no global checkpoint to commit with the changes as SQLite does. Instead each
counter item carries, per shard, the last sequence number whose records it includes
(``q#<shard>``), and a batch's pre-aggregated delta is ONE UpdateItem
``ADD n :n, s :s SET q#<shard> = :last`` under ``attribute_not_exists(q) OR q < :first``.
Within a shard records are applied in order, so an item's ``q`` says exactly which of
the shard's records it holds: all up to ``q``. Then:

- a redelivered batch (``q >= :last``) fails the condition on every item and changes
  nothing — ConditionalCheckFailed is the expected no-op;
- a batch whose boundaries differ from a failed attempt's (a poller restarted with a
  larger read, Lambda's retry from a reported failure) overlaps: ``:first <= q < :last``.
  The item then gets only the records after ``q``, recomputed from the batch (``redo``),
  under ``q = :stored``. A plain ``q < :last`` condition would count the overlap twice.

``q`` is text ``seq_key(n)``: the digit count then the digits, so text order is number
order for sequence numbers of any length (AWS's reach 40 digits, beyond DynamoDB's 38
digits of number precision). Guards of shards that finished long ago are REMOVEd when a
later write sees them (``retired``), so an item holds the guards of the few shards that
wrote it recently: a shard closes every few hours and never delivers again once finished.

min and max have no update function in DynamoDB: a new cell gets them with
``if_not_exists``; when the returned item shows the batch goes beyond, a follow-up
conditional SET (``lo > :v``) folds it in. Folding is idempotent, so it is also done on
a redelivered batch (covering a crash between the ADD and the fold). Gauges are a
conditional Put, last-writer-wins on ``(occurredAt, id)``: idempotent by nature.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from domain.ports import CheckpointConflict, CounterDelta, GaugeValue, gauge_marker, metric_marker
from projections.buckets import Retention
from storage.dynamodb_base import TTL_ATTRIBUTE, ConditionFailed, Item, Table
from storage.dynamodb_view_items import (
    GUARD_PREFIX,
    counter_key,
    expires_at,
    gauge_key,
    seq_key,
    seq_of,
    sortable,
    sum_number,
    types_pk,
)

#: The delta of one item from the batch's records after a position; None when none.
ItemRedo = Callable[[int], CounterDelta | None]


@dataclass(frozen=True, slots=True)
class Guard:
    """The records ``first..last`` (``seq_key`` text) of one shard, ``partition``."""

    partition: str
    first: str
    last: str

    @classmethod
    def of(cls, partition: str, first: int, last: int) -> Guard:
        return cls(partition, seq_key(first), seq_key(last))

    @property
    def attribute(self) -> str:
        return GUARD_PREFIX + self.partition


class GuardedWrites:
    """The writes of one batch's items, each exactly once whatever is redelivered.

    ``counter``, ``event_type`` and ``gauge`` write one item each and return the change
    marker of the data they changed, None when they changed nothing (or have no marker).
    """

    def __init__(self, table: Table) -> None:
        self._table = table

    def counter(
        self,
        ident: tuple[str, int, str, int, tuple[str, ...]],
        delta: CounterDelta,
        guard: Guard,
        redo: ItemRedo | None,
        retired: Collection[str],
        retention: Retention,
    ) -> str | None:
        """Add ``delta`` to the cell ``(metric key, generation, resolution, bucket, dims)``."""
        metric_key, gen, resolution, bucket, dims = ident
        key = counter_key(metric_key, gen, resolution, bucket, dims)
        extra: dict[str, Any] = {}
        if "d" in key:
            extra["d"] = key.pop("d")
        expires = expires_at(retention, resolution, bucket)
        if expires is not None:
            extra[TTL_ATTRIBUTE] = {"N": str(expires)}
        return metric_marker(metric_key) if self.add("counter", key, delta, extra, guard, redo, retired) else None

    def event_type(
        self, etype: str, n: int, guard: Guard, redo: ItemRedo | None, retired: Collection[str], gen: int = 0
    ) -> None:
        """Add ``n`` facts to the count of ``etype`` in the totals of generation ``gen``."""
        key = {"pk": {"S": types_pk(gen)}, "sk": {"S": etype}}
        # No marker of its own: the type's built-in count changes with it.
        self.add("event type", key, CounterDelta(n, 0.0, None, None), {}, guard, redo, retired)

    def gauge(self, name: str, key: str, gen: int, reading: GaugeValue) -> str | None:
        """The reading unless a later one is stored."""
        return gauge_marker(name) if self.put_gauge(name, key, gen, reading) else None

    def add(
        self,
        kind: str,
        key: Item,
        delta: CounterDelta,
        extra: dict[str, Any],
        guard: Guard,
        redo: ItemRedo | None,
        retired: Collection[str],
    ) -> bool:
        """One guarded ADD of ``delta`` (and SET of ``extra``) to the counter-like item at
        ``key``; True when it added anything. Without ``redo``, an item that holds part
        of the batch raises ``CheckpointConflict``."""
        condition = "attribute_not_exists(#q) OR #q < :first"
        values: dict[str, Any] = {":first": {"S": guard.first}}
        batch_delta = delta
        while True:
            try:
                try:
                    item = self._table.update_metered(kind, **_add_request(key, delta, extra, guard, condition, values))
                except ClientError as exc:
                    if "precision" not in str(exc) and "overflow" not in str(exc).lower():
                        raise
                    # The stored sum outgrew DynamoDB's 38 digits: mark it unknown, keep counting.
                    huge = CounterDelta(delta.count, math.inf, delta.min, delta.max)
                    item = self._table.update_metered(kind, **_add_request(key, huge, extra, guard, condition, values))
            except ConditionFailed as failed:
                stored = failed.item.get(guard.attribute, {}).get("S")
                self._fold_extremes(kind, key, failed.item, batch_delta)
                if stored is None or stored >= guard.last:
                    return False  # the item holds the whole batch already: a redelivery
                if redo is None:
                    raise CheckpointConflict(
                        "views",
                        guard.partition,
                        f"item {key['pk']['S']} {key['sk']['S']} holds records up to {seq_of(stored)}, inside this"
                        " batch; resend the batch as first delivered",
                    ) from None
                # The item holds the batch's records up to `stored`: add only those after it.
                remaining = redo(seq_of(stored))
                if remaining is None or not remaining.count:
                    return False
                delta = remaining
                condition = "#q = :stored"
                values = {":stored": {"S": stored}}
                continue
            self._fold_extremes(kind, key, item, batch_delta)
            self._drop_retired_guards(kind, key, item, guard, retired)
            return True

    def _fold_extremes(self, kind: str, key: Item, item: Mapping[str, Any], delta: CounterDelta) -> None:
        """Fold the batch's min and max into the item when they go beyond what it holds:
        one conditional SET for both when both do, else one for the one that does."""
        needed: list[tuple[str, str, str]] = []
        for attribute, value, beyond in (("lo", delta.min, ">"), ("hi", delta.max, "<")):
            if value is None:
                continue
            wanted = sortable(value)
            stored = item.get(attribute, {}).get("S")
            if stored is None or (stored > wanted if beyond == ">" else stored < wanted):
                needed.append((attribute, wanted, beyond))
        if len(needed) == 2 and self._try_fold(kind, key, needed):
            return
        for one in needed:
            # Another writer may have gone further on one of the two: each on its own.
            self._try_fold(kind, key, [one])

    def _try_fold(self, kind: str, key: Item, folds: list[tuple[str, str, str]]) -> bool:
        """SET the attributes unless the item already holds something further (False then:
        min and max only move one way)."""
        try:
            self._table.update_metered(
                f"{kind} min/max fold",
                Key=key,
                UpdateExpression="SET " + ", ".join(f"#{a} = :{a}" for a, _, _ in folds),
                ConditionExpression="attribute_exists(pk) AND "
                + " AND ".join(f"(attribute_not_exists(#{a}) OR #{a} {beyond} :{a})" for a, _, beyond in folds),
                ExpressionAttributeNames={f"#{a}": a for a, _, _ in folds},
                ExpressionAttributeValues={f":{a}": {"S": wanted} for a, wanted, _ in folds},
            )
        except ConditionFailed:
            return False
        return True

    def _drop_retired_guards(
        self, kind: str, key: Item, item: Mapping[str, Any], guard: Guard, retired: Collection[str]
    ) -> None:
        stale = [
            name
            for name in item
            if name.startswith(GUARD_PREFIX) and name != guard.attribute and name[len(GUARD_PREFIX) :] in retired
        ]
        if not stale:
            return
        names = {f"#g{i}": name for i, name in enumerate(stale)}
        with suppress(ConditionFailed):  # the item is gone (TTL): nothing to drop
            self._table.update_metered(
                f"{kind} guard removal",
                Key=key,
                UpdateExpression="REMOVE " + ", ".join(names),
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames=names,
            )

    def put_gauge(self, name: str, key: str, gen: int, reading: GaugeValue) -> bool:
        """The reading unless a later one is stored; True when it was written."""
        item = {
            **gauge_key(name, gen, key),
            "v": {"S": repr(float(reading.value))},
            "t": {"N": str(reading.occurred_at)},
            "e": {"S": reading.event_id},
        }
        try:
            self._table.put(
                "writing a gauge",
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR #t < :t OR (#t = :t AND #e < :e)",
                ExpressionAttributeNames={"#t": "t", "#e": "e"},
                ExpressionAttributeValues={":t": item["t"], ":e": item["e"]},
            )
        except ConditionFailed:
            # A reading with a later (occurredAt, id) is stored: last writer wins.
            self._table.metered("gauge", item)
            return False
        self._table.metered("gauge", item)
        return True


def _add_request(
    key: Item, delta: CounterDelta, extra: dict[str, Any], guard: Guard, condition: str, values: dict
) -> dict[str, Any]:
    names = {"#n": "n", "#q": guard.attribute}
    vals: dict[str, Any] = {":n": {"N": str(delta.count)}, ":last": {"S": guard.last}, **values}
    adds = ["#n :n"]
    sets = ["#q = :last"]
    if delta.min is not None or delta.max is not None or delta.sum:
        total = sum_number(delta.sum)
        if total is None:
            names["#ovf"] = "ovf"
            vals[":true"] = {"N": "1"}
            sets.append("#ovf = :true")
        else:
            names["#s"] = "s"
            vals[":s"] = {"N": total}
            adds.append("#s :s")
    for attribute, value in (("lo", delta.min), ("hi", delta.max)):
        if value is not None:
            names[f"#{attribute}"] = attribute
            vals[f":{attribute}"] = {"S": sortable(value)}
            sets.append(f"#{attribute} = if_not_exists(#{attribute}, :{attribute})")
    for attribute, value in extra.items():
        names[f"#x_{attribute}"] = attribute
        vals[f":x_{attribute}"] = value
        sets.append(f"#x_{attribute} = :x_{attribute}")
    return {
        "Key": key,
        "UpdateExpression": f"ADD {', '.join(adds)} SET {', '.join(sets)}",
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": vals,
    }
