"""Wiring of alert evaluation and delivery, shared by every backend's ``handlers``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Protocol

from domain.clock import SYSTEM_CLOCK, Clock
from domain.notifiers import Notifier
from domain.ports import ChangeMarkers, CounterReader, EventStore
from domain.settings import Settings
from projections.buckets import Bucketing
from services.alert_delivery import Dispatcher, Outbox
from services.alert_evaluation import AlertsHandler
from services.alert_values import AlertValues
from services.alerts import AlertsService
from services.metrics import CatalogCache
from storage.notify_log import LogNotifier
from storage.notify_sns import SnsNotifier
from storage.notify_webhook import WebhookNotifier

#: The SNS topic of rules whose SNS target names none.
SNS_TOPIC_ENV = "PULSE_SNS_TOPIC_ARN"
#: Where SNS is (moto, LocalStack) when not AWS itself.
SNS_ENDPOINT_ENV = "PULSE_SNS_ENDPOINT_URL"
#: Set by AWS Lambda in every function's environment.
LAMBDA_ENV = "AWS_LAMBDA_FUNCTION_NAME"


class CounterViews(CounterReader, ChangeMarkers, Protocol):
    """What evaluation reads: counters and gauges, and the change markers."""


def notifiers(settings: Settings, environ: Mapping[str, str] = os.environ) -> dict[str, Notifier]:
    """Webhooks and the log everywhere; SNS through boto3 (a rule's own topic, else the default)."""
    return {
        "WEBHOOK": WebhookNotifier(),
        "LOG": LogNotifier(),
        "SNS": SnsNotifier.create(settings.region, environ.get(SNS_TOPIC_ENV), environ.get(SNS_ENDPOINT_ENV)),
    }


def outbox(events: EventStore, settings: Settings) -> Outbox:
    return Outbox(events, notifiers(settings))


def alerts_handler(
    events: EventStore,
    views: CounterViews,
    settings: Settings,
    counters_position: Callable[[str], int],
    clock: Clock | None = None,
    dispatch: bool | None = None,
) -> AlertsHandler:
    """The ``alerts`` handler, after the counters it reads; with ``dispatch``, a dispatcher
    thread delivers what it records. By default it does except on Lambda, where a thread
    is frozen between invocations: the Lambda handlers drain the outbox themselves."""
    if dispatch is None:
        dispatch = LAMBDA_ENV not in os.environ
    catalogs = CatalogCache(events)
    values = AlertValues(views, Bucketing(settings.timezone), catalogs.current)
    dispatcher = Dispatcher(outbox(events, settings)) if dispatch else None
    return AlertsHandler(
        events,
        views,
        values,
        counters_position,
        clock=clock or SYSTEM_CLOCK,
        recorded=dispatcher.recorded if dispatcher is not None else None,
        ticked=dispatcher.start if dispatcher is not None else None,
        stopped=dispatcher.stop if dispatcher is not None else None,
    )


def alerts_service(events: EventStore, views: CounterViews, settings: Settings, clock: Clock) -> AlertsService:
    """Rules, history, deliveries, test sends and backtests, for the API and the CLI."""
    catalogs = CatalogCache(events)
    return AlertsService(events, views, Bucketing(settings.timezone), catalogs.current, outbox(events, settings), clock)
