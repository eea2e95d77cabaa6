"""A parked record as JSON text, as the SQLite and DynamoDB parked-event stores keep it."""

from __future__ import annotations

from typing import Any

from domain.events import RecordedEvent
from domain.micros import epoch_micros, from_epoch_micros
from domain.parked import ParkedEvent
from storage.codec import dumps, loads


def encode_event(event: RecordedEvent) -> str:
    return dumps(
        {
            "id": event.id,
            "type": event.type,
            "o": epoch_micros(event.occurred_at),
            "r": epoch_micros(event.received_at),
            "src": event.source,
            "stream": event.stream_id,
            "v": event.version,
            "pos": event.position,
            "p": dict(event.properties),
        }
    )


def decode_event(text: str) -> RecordedEvent:
    raw: dict[str, Any] = loads(text)
    return RecordedEvent(
        id=raw["id"],
        type=raw["type"],
        occurred_at=from_epoch_micros(raw["o"]),
        properties=raw["p"],
        source=raw["src"],
        stream_id=raw["stream"],
        version=raw["v"],
        position=raw["pos"],
        received_at=from_epoch_micros(raw["r"]),
    )


def record(
    projection: str, partition: str, event: str, error: str, attempts: int, first: float, last: float
) -> ParkedEvent:
    return ParkedEvent(projection, partition, decode_event(event), error, int(attempts), float(first), float(last))
