"""The recent-events feed on DynamoDB: items in the views table.

Item layout: pk ``R#<scope>`` (an event type, or ``*`` for every type), sk
``<occurredAt in epoch µs + 10^18, 19 digits>#<event id>``, so a Query in descending key
order reads the newest first, then by id; ``e`` holds the event as JSON text
(``storage.codec``). A put is idempotent (same key, same bytes), so a redelivered or
overlapping batch changes nothing, and the checkpoint per shard (as every projection's,
``CP`` items) only saves work on restart.

Generations (``storage.dynamodb_recent_generations``): the items above are generation 0;
a replay builds generation g under pk ``R<g>#<scope>`` while live batches write both, and
switches reads to it in one write of the state item.

Each scope keeps the newest ``keep`` items: a trim (a keys-only Query past the newest
``keep``, then BatchWriteItem deletes) runs once ``trim_every`` items were written to the
scope by this process, and on the scope's first write in the process. Reads are
bounded by their ``Limit``, so items awaiting a trim never show.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from domain.events import FACTS_STREAM, RecordedEvent
from domain.micros import later
from domain.ports import ALL_TYPES, PROJECTIONS_MARKER, RECENT_KEEP, RecentChanges, recent_marker
from domain.settings import Settings
from storage.codec import dumps, loads
from storage.dynamodb_base import BATCH_WRITE_ITEMS, Table, chunked, make_client
from storage.dynamodb_recent_generations import RecentGenerations
from storage.dynamodb_views import DynamoViewStore

_OFFSET = 10**18
TRIM_EVERY = 100


def scope_pk(gen: int, scope: str) -> str:
    """The pk of ``scope``'s items in generation ``gen`` (0: the first, ``R#<scope>``)."""
    return f"R{gen or ''}#{scope}"


def generation_of_pk(pk: str) -> int | None:
    """The generation of a feed item's pk (None: not a feed item)."""
    head, sep, _ = pk.partition("#")
    if not sep or not head.startswith("R") or not (head == "R" or head[1:].isdigit()):
        return None
    return int(head[1:] or 0)


def sort_key(event: RecordedEvent) -> str:
    return f"{event.occurred_micros + _OFFSET:019d}#{event.id}"


def encode(event: RecordedEvent) -> str:
    return dumps(
        {
            "id": event.id,
            "type": event.type,
            "o": event.occurred_micros,
            "r": event.received_micros,
            "src": event.source,
            "p": dict(event.properties),
            "pos": None if event.position is None else str(event.position),
        }
    )


def decode(text: str) -> RecordedEvent:
    raw = loads(text)
    return RecordedEvent.at_micros(
        id=raw["id"],
        type=raw["type"],
        occurred_micros=raw["o"],
        properties=raw["p"],
        source=raw["src"],
        stream_id=FACTS_STREAM,
        version=None,
        position=None if raw["pos"] is None else int(raw["pos"]),
        received_micros=raw["r"],
    )


class DynamoRecentEvents:
    """``ProjectionStore[RecentChanges]`` and ``RecentEventsReader`` in the views table."""

    def __init__(
        self, client: Any, views: DynamoViewStore, keep: int = RECENT_KEEP, trim_every: int = TRIM_EVERY
    ) -> None:
        self._table = Table(client, views.table_name)
        self.views = views
        self.table_name = views.table_name
        self.keep = keep
        self.trim_every = trim_every
        self._written: dict[tuple[int, str], int] = {}
        self.generations = RecentGenerations(self._table)

    @classmethod
    def from_settings(cls, settings: Settings, views: DynamoViewStore) -> DynamoRecentEvents:
        return cls(make_client(settings), views)

    def position(self, projection: str, partition: str) -> int:
        return self.views.checkpoint(projection, partition).position

    def _put(self, items: Sequence[dict[str, Any]]) -> None:
        for chunk in chunked(items, BATCH_WRITE_ITEMS):
            self._table.batch_write([{"PutRequest": {"Item": item}} for item in chunk], "writing recent events")

    def _trim(self, gen: int, scope: str) -> None:
        """Delete the scope's items past the newest ``keep``."""
        newest_first = self._table.query(
            {
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": scope_pk(gen, scope)}},
                "ProjectionExpression": "pk, sk",
                "ScanIndexForward": False,
            },
            "trimming recent events",
        )
        doomed = [{"pk": item["pk"], "sk": item["sk"]} for seen, item in enumerate(newest_first) if seen >= self.keep]
        self._table.delete_keys(doomed, "trimming recent events")

    def apply(self, projection: str, partition: str, changes: RecentChanges, after: int, upto: int) -> bool:
        current = self.views.checkpoint(projection, partition)
        if current.position >= upto:
            return False
        touched = {PROJECTIONS_MARKER, *map(recent_marker, changes.scopes)}
        # The serving generation, and the one a replay builds (it must miss nothing).
        for gen in self.generations.state(consistent=False).written:
            self.write_generation(gen, changes.scopes)
        watermark = later(current.watermark, changes.watermark)
        self.views.save_checkpoint(projection, partition, upto, watermark, changes.events)
        # After the data: subscribers of the feed wake up.
        self.views.bump_markers(touched)
        return True

    def write_generation(self, gen: int, scopes: Mapping[str, Sequence[RecordedEvent]]) -> None:
        """Put ``scopes``' events into generation ``gen`` and trim what falls past ``keep``."""
        items: list[dict[str, Any]] = []
        for scope, events in scopes.items():
            items.extend(
                {"pk": {"S": scope_pk(gen, scope)}, "sk": {"S": sort_key(event)}, "e": {"S": encode(event)}}
                for event in events
            )
        self._put(items)
        for scope, events in scopes.items():
            written = self._written.get((gen, scope))
            total = len(events) + (written or 0)
            if written is None or total >= self.trim_every:
                self._trim(gen, scope)
                total = 0
            self._written[(gen, scope)] = total

    def drop_generations(self, keep: Collection[int]) -> int:
        """Delete the feed items of every generation but ``keep`` (one Scan); how many."""
        doomed = [
            {"pk": item["pk"], "sk": item["sk"]}
            for item in self._table.scan(
                {
                    "ProjectionExpression": "pk, sk",
                    "FilterExpression": "begins_with(pk, :r)",
                    "ExpressionAttributeValues": {":r": {"S": "R"}},
                },
                "looking for replaced recent events",
            )
            if generation_of_pk(item["pk"]["S"]) not in (None, *keep)
        ]
        self._table.delete_keys(doomed, "deleting replaced recent events")
        return len(doomed)

    def recent_events(self, event_type: str | None, limit: int) -> list[RecordedEvent]:
        gen = self.generations.state(consistent=False).gen
        with self._table.errors("reading recent events"):
            response = self._table.client.query(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": scope_pk(gen, event_type or ALL_TYPES)}},
                ScanIndexForward=False,
                Limit=limit,
                ConsistentRead=True,
            )
        return [decode(item["e"]["S"]) for item in response.get("Items", [])]
