"""The server log as a notification target: the default when nothing else is configured."""

from __future__ import annotations

import json
import logging

from domain.alerts import Target
from domain.notifiers import Notification

log = logging.getLogger("pulse.alerts")


class LogNotifier:
    def send(self, notification: Notification, target: Target) -> int | None:
        level = logging.WARNING if notification.kind == "firing" else logging.INFO
        body = notification.as_json()
        # The JSON in the line for people reading the log; ``alert`` on the record for handlers.
        log.log(
            level, "alert %s: %s %s", notification.kind, notification.message, json.dumps(body), extra={"alert": body}
        )
        return None
