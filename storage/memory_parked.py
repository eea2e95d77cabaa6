"""The in-memory fake of ``domain.parked.ParkedEvents``."""

from __future__ import annotations

import threading

from domain.parked import ParkedEvent, merged


class MemoryParkedEvents:
    def __init__(self) -> None:
        self._records: dict[tuple[str, str], ParkedEvent] = {}
        self._lock = threading.Lock()

    def park(self, parked: ParkedEvent) -> None:
        with self._lock:
            key = (parked.projection, parked.event_id)
            self._records[key] = merged(self._records.get(key), parked)

    def get(self, projection: str, event_id: str) -> ParkedEvent | None:
        with self._lock:
            return self._records.get((projection, event_id))

    def list(self, projection: str | None = None) -> list[ParkedEvent]:
        with self._lock:
            found = [p for p in self._records.values() if projection is None or p.projection == projection]
        return sorted(found, key=lambda p: (p.projection, p.partition, p.position))

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for projection, _ in self._records:
                counts[projection] = counts.get(projection, 0) + 1
        return counts

    def drop(self, projection: str, event_id: str) -> bool:
        with self._lock:
            return self._records.pop((projection, event_id), None) is not None
