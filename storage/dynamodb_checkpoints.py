"""Checkpoints and change markers in the DynamoDB views table.

A checkpoint (pk ``CP``) is per projection and stream shard: the last sequence number
read (``seq_key`` text), the latest ``occurredAt`` seen, totals, and ``fin`` once the
shard was read to its end. It is written after the batch's items and only saves work
on restart: the items' guards make a batch exactly once (``storage.dynamodb_guarded_writes``).

Change markers (pk ``MK``) are counters ADDed by one after writes that changed the data
behind them succeeded, and read all at once with one strongly consistent Query: what
live subscriptions poll (``ViewStore.change_markers``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from domain.micros import now_micros
from domain.ports import Checkpoint
from storage.dynamodb_base import ConditionFailed, Item, Table, WriterPool
from storage.dynamodb_view_items import CHECKPOINT_PK, MARKERS_PK, number, seq_key, seq_of


def _key(projection: str, partition: str) -> Item:
    return {"pk": {"S": CHECKPOINT_PK}, "sk": {"S": f"{projection}#{partition}"}}


class Checkpoints:
    """The checkpoint items; ``definitions_version()`` is what every checkpoint reports,
    the one version of the state item for all shards (see ``Definitions.finish_build``)."""

    def __init__(self, table: Table, definitions_version: Callable[[], int]) -> None:
        self._table = table
        self._definitions_version = definitions_version

    def _from_item(self, item: Mapping[str, Any], projection: str, partition: str) -> Checkpoint:
        wm = item.get("wm")
        at = item.get("at")
        return Checkpoint(
            projection=projection,
            partition=partition,
            position=seq_of(item["pos"]["S"]) if "pos" in item else 0,
            definitions_version=self._definitions_version(),
            watermark=None if wm is None else int(wm["N"]),
            updated_at=None if at is None else int(at["N"]),
            events_total=number(item, "total"),
            events_per_second=float(item["eps"]["N"]) if "eps" in item else 0.0,
            lag_seconds=float(item["lag"]["N"]) if "lag" in item else None,
            lag_measured_at=int(item["lagAt"]["N"]) if "lagAt" in item else None,
        )

    def get(self, projection: str, partition: str = "") -> Checkpoint:
        item = self._table.get(_key(projection, partition), "reading a checkpoint")
        return self._from_item(item or {}, projection, partition)

    def _items(self) -> Iterator[Item]:
        return self._table.query(
            {
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": CHECKPOINT_PK}},
                "ConsistentRead": True,
            },
            "reading checkpoints",
        )

    def all(self) -> list[Checkpoint]:
        found = []
        for item in self._items():
            projection, partition = item["sk"]["S"].split("#", 1)
            found.append(self._from_item(item, projection, partition))
        return found

    def finished_partitions(self, projection: str) -> dict[str, int]:
        """Partitions (shards) read to their end, with when that was recorded (epoch µs)."""
        finished = {}
        for item in self._items():
            name, partition = item["sk"]["S"].split("#", 1)
            if name == projection and "fin" in item:
                finished[partition] = int(item["fin"]["N"])
        return finished

    def record_lag(self, projection: str, partition: str, seconds: float) -> None:
        """How far behind the shard's reader is now (see ``Checkpoint.lag_seconds``)."""
        self._table.update(
            "recording a shard's lag",
            Key=_key(projection, partition),
            UpdateExpression="SET #lag = :lag, #lagAt = :now",
            ExpressionAttributeNames={"#lag": "lag", "#lagAt": "lagAt"},
            ExpressionAttributeValues={":lag": {"N": repr(round(seconds, 3))}, ":now": {"N": str(now_micros())}},
        )

    def mark_finished(self, projection: str, partition: str) -> None:
        self._table.update(
            "marking a shard finished",
            Key=_key(projection, partition),
            UpdateExpression="SET #fin = if_not_exists(#fin, :now)",
            ExpressionAttributeNames={"#fin": "fin"},
            ExpressionAttributeValues={":now": {"N": str(now_micros())}},
        )

    def save(
        self,
        projection: str,
        partition: str,
        position: int,
        watermark: int | None,
        events: int,
        events_per_second: float = 0.0,
    ) -> bool:
        """Move the checkpoint forward to ``position`` (never back); False if it was there."""
        names = {"#pos": "pos", "#at": "at", "#eps": "eps", "#total": "total"}
        values: dict[str, Any] = {
            ":pos": {"S": seq_key(position)},
            ":at": {"N": str(now_micros())},
            ":eps": {"N": repr(float(events_per_second))},
            ":events": {"N": str(events)},
        }
        expression = "SET #pos = :pos, #at = :at, #eps = :eps"
        if watermark is not None:
            names["#wm"] = "wm"
            values[":wm"] = {"N": str(watermark)}
            expression += ", #wm = :wm"
        try:
            self._table.update_metered(
                "checkpoint",
                Key=_key(projection, partition),
                UpdateExpression=expression + " ADD #total :events",
                ConditionExpression="attribute_not_exists(#pos) OR #pos < :pos",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ConditionFailed:
            return False
        return True


class ChangeMarkers:
    """The change marker items, moved on the writer threads."""

    def __init__(self, table: Table, pool: WriterPool) -> None:
        self._table = table
        self._pool = pool

    def bump(self, keys: Collection[str]) -> None:
        """Move each marker one version up; call once the data writes behind them succeeded."""

        def bump(key: str) -> None:
            response = self._table.update(
                "moving a change marker",
                Key={"pk": {"S": MARKERS_PK}, "sk": {"S": key}},
                UpdateExpression="ADD #v :one",
                ExpressionAttributeNames={"#v": "v"},
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="ALL_NEW",
            )
            self._table.metered("change marker", response.get("Attributes"))

        self._pool.each(bump, sorted(keys))

    def read(self) -> dict[str, int]:
        """Every change marker, ``{key: version}``, in one strongly consistent Query."""
        items = self._table.query(
            {
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": MARKERS_PK}},
                "ConsistentRead": True,
            },
            "reading change markers",
        )
        return {item["sk"]["S"]: int(item["v"]["N"]) for item in items}
