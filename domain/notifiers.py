"""The notifier port: how an alert's transition leaves Pulse (SNS, a webhook, the log).

Adapters live in ``storage/notify_*.py``; the in-memory fake used by tests is
``storage.notify_memory.MemoryNotifier``. An adapter makes one attempt: it returns the
status code it got (None where there is none) or raises ``DeliveryFailed``; retries,
backoff and the delivery log are the outbox's (``services.alert_delivery``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from domain.alerts import Target
from domain.errors import PulseError


@dataclass(frozen=True, slots=True)
class Notification:
    """What is announced: one transition of one rule instance (or a test send).

    ``id`` is the transition id: the same transition always has the same id, so a
    receiver (or SNS FIFO deduplication) can drop a repeat."""

    id: str
    rule: str
    instance: str
    kind: str  # "firing", "resolved" or "test"
    state: str
    previous_state: str
    value: float | None
    threshold: float
    severity: str
    message: str
    at: float  # epoch seconds

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "instance": self.instance,
            "kind": self.kind,
            "state": self.state,
            "previousState": self.previous_state,
            "value": self.value,
            "threshold": self.threshold,
            "severity": self.severity,
            "message": self.message,
            "at": self.at,
        }


class DeliveryFailed(PulseError):
    """One attempt to deliver failed; ``status_code`` is what the endpoint answered, if anything."""

    def __init__(self, message: str, status_code: int | None = None, retry: bool = True) -> None:
        super().__init__(message)
        self.status_code = status_code
        #: False when trying again cannot help (e.g. a 4xx other than 408/429).
        self.retry = retry


@runtime_checkable
class Notifier(Protocol):
    def send(self, notification: Notification, target: Target) -> int | None:
        """Deliver once to ``target``; the status code, or raise ``DeliveryFailed``."""
