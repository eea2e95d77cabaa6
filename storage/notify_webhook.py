"""Webhooks as a notification target: a JSON POST signed with the target's secret.

``X-Pulse-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed by the secret>`` lets
a receiver check the body came from Pulse unaltered; ``X-Pulse-Delivery`` carries the
transition id, the same on every retry, so a receiver can drop a repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request

from domain.alerts import Target
from domain.notifiers import DeliveryFailed, Notification

SIGNATURE_HEADER = "X-Pulse-Signature"
DELIVERY_HEADER = "X-Pulse-Delivery"
TIMEOUT_SECONDS = 5.0


def signature(secret: str, body: bytes) -> str:
    """The ``X-Pulse-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_of(notification: Notification) -> bytes:
    return json.dumps(notification.as_json(), sort_keys=True, separators=(",", ":")).encode()


class WebhookNotifier:
    def __init__(self, timeout: float = TIMEOUT_SECONDS) -> None:
        self.timeout = timeout

    def send(self, notification: Notification, target: Target) -> int | None:
        if not target.url:
            raise DeliveryFailed("the webhook target has no URL", retry=False)
        body = body_of(notification)
        request = urllib.request.Request(
            target.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "pulse-alerts",
                SIGNATURE_HEADER: signature(target.secret or "", body),
                DELIVERY_HEADER: notification.id,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            retry = exc.code >= 500 or exc.code in (408, 429)
            raise DeliveryFailed(f"{target.url} answered {exc.code}", status_code=exc.code, retry=retry) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryFailed(f"{target.url} unreachable: {exc}") from exc
