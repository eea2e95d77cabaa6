"""The in-memory fake of the notifier port, for tests: records what it was given."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from domain.alerts import Target
from domain.notifiers import DeliveryFailed, Notification


class MemoryNotifier:
    """Keeps every notification sent; fails the first ``fail_first`` attempts."""

    def __init__(self, fail_first: int = 0) -> None:
        self.sent: list[tuple[Notification, Target]] = []
        self.attempts = 0
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def send(self, notification: Notification, target: Target) -> int | None:
        with self._lock:
            self.attempts += 1
            if self.attempts <= self.fail_first:
                raise DeliveryFailed(f"refused attempt {self.attempts}", status_code=503)
            self.sent.append((notification, target))
        return 200

    def __iter__(self) -> Iterator[Notification]:
        return iter([n for n, _ in self.sent])
