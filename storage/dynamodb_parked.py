"""Parked events on DynamoDB: items in the views table, beside the checkpoints.

Item layout: pk ``PARKED``, sk ``<projection>#<event id>``; ``e`` holds the event as JSON
text (``storage.parked_codec``). Parked events are rare, so one partition holds them all
and one strongly consistent Query lists or counts them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from domain.parked import ParkedEvent, merged
from domain.settings import Settings
from storage.dynamodb_base import Item, Table, make_client
from storage.parked_codec import encode_event, record

PARKED_PK = "PARKED"


def _key(projection: str, event_id: str) -> Item:
    return {"pk": {"S": PARKED_PK}, "sk": {"S": f"{projection}#{event_id}"}}


def _from_item(item: Mapping[str, Any]) -> ParkedEvent:
    return record(
        item["proj"]["S"],
        item["part"]["S"],
        item["e"]["S"],
        item["err"]["S"],
        int(item["n"]["N"]),
        float(item["first"]["N"]),
        float(item["last"]["N"]),
    )


class DynamoParkedEvents:
    """``ParkedEvents`` in the DynamoDB views table."""

    def __init__(self, table: Table) -> None:
        self._table = table

    @classmethod
    def from_settings(cls, settings: Settings) -> DynamoParkedEvents:
        return cls(Table(make_client(settings), settings.views_table))

    def park(self, parked: ParkedEvent) -> None:
        # A read then a put: only the one engine of a partition parks its events.
        stored = merged(self.get(parked.projection, parked.event_id), parked)
        self._table.put(
            "parking an event",
            Item={
                **_key(stored.projection, stored.event_id),
                "proj": {"S": stored.projection},
                "part": {"S": stored.partition},
                "e": {"S": encode_event(stored.event)},
                "err": {"S": stored.error[:2000]},
                "n": {"N": str(stored.attempts)},
                "first": {"N": repr(stored.first_failure)},
                "last": {"N": repr(stored.last_failure)},
            },
        )

    def get(self, projection: str, event_id: str) -> ParkedEvent | None:
        item = self._table.get(_key(projection, event_id), "reading a parked event")
        return None if item is None else _from_item(item)

    def _items(self, projection: str | None) -> Iterator[Item]:
        request: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": PARKED_PK}},
            "ConsistentRead": True,
        }
        if projection is not None:
            request["KeyConditionExpression"] = "pk = :pk AND begins_with(sk, :p)"
            request["ExpressionAttributeValues"][":p"] = {"S": f"{projection}#"}
        return self._table.query(request, "reading parked events")

    def list(self, projection: str | None = None) -> list[ParkedEvent]:
        found = [_from_item(item) for item in self._items(projection)]
        return sorted(found, key=lambda p: (p.projection, p.partition, p.position))

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self._items(None):
            counts[item["proj"]["S"]] = counts.get(item["proj"]["S"], 0) + 1
        return counts

    def drop(self, projection: str, event_id: str) -> bool:
        response = self._table.client.delete_item(
            TableName=self._table.name, Key=_key(projection, event_id), ReturnValues="ALL_OLD"
        )
        return "Attributes" in response
