"""The notifier port on its adapters: one abstract case, subclassed per adapter (the
in-memory fake, the server log, a webhook against a real local HTTP server, SNS on moto
with an SQS queue subscribed to read back exactly what was published).

Each case runs the outbox over a transition with its adapter behind a target that fails
twice then succeeds (where the adapter can fail), and checks what arrived: exactly one
notification per transition, with what a receiver relies on."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import boto3
import pytest
from moto import mock_aws

from domain.alerts import LOG, SNS, WEBHOOK, Target
from domain.notifiers import Notification, Notifier
from services.alert_delivery import Outbox
from storage.memory import MemoryEventStore
from storage.notify_log import LogNotifier
from storage.notify_memory import MemoryNotifier
from storage.notify_sns import SnsNotifier
from storage.notify_webhook import DELIVERY_HEADER, SIGNATURE_HEADER, WebhookNotifier

SECRET = "a-target-secret-0123"
RULE = "low-stock"


def notification(**changes: Any) -> Notification:
    base = {
        "id": "tr-0001",
        "rule": RULE,
        "instance": "mug",
        "kind": "firing",
        "state": "FIRING",
        "previous_state": "NORMAL",
        "value": 3.0,
        "threshold": 5.0,
        "severity": "CRITICAL",
        "message": "low-stock is FIRING: value 3 (below 5) for product=mug",
        "at": 1_800_000_000.0,
    }
    return Notification(**{**base, **changes})


class NotifierContract:
    """What every adapter does; subclasses provide the adapter, its target and a reader."""

    flaky: ClassVar[bool] = False  # whether the target can be made to fail twice first

    @pytest.fixture
    def adapter(self, request: pytest.FixtureRequest) -> Iterator[tuple[Notifier, Target]]:
        raise NotImplementedError

    def received(self) -> list[dict[str, Any]]:
        """What arrived, as notification JSON bodies, in order."""
        raise NotImplementedError

    def check_received(self, body: dict[str, Any]) -> None:
        """Adapter-specific checks of one arrival (signature, attributes)."""

    def test_a_notification_arrives_once_with_its_fields(self, adapter: tuple[Notifier, Target]) -> None:
        notifier, target = adapter
        assert isinstance(notifier, Notifier)
        outbox = Outbox(MemoryEventStore(), {target.kind: notifier}, sleep=lambda _: None)
        delivery = outbox.deliver(RULE, notification(), target)
        assert delivery is not None and delivery.status == "delivered"
        assert delivery.attempts == (3 if self.flaky else 1)
        again = outbox.deliver(RULE, notification(), target)
        assert again is None, "a delivered transition is not sent again"
        bodies = self.received()
        assert len(bodies) == 1
        assert bodies[0]["id"] == "tr-0001" and bodies[0]["rule"] == RULE and bodies[0]["kind"] == "firing"
        assert bodies[0]["value"] == 3.0 and bodies[0]["severity"] == "CRITICAL"
        self.check_received(bodies[0])
        assert [d.status for d in outbox.deliveries(RULE)] == ["delivered"]


class TestMemoryNotifier(NotifierContract):
    flaky = True

    @pytest.fixture
    def adapter(self) -> Iterator[tuple[Notifier, Target]]:
        self.fake = MemoryNotifier(fail_first=2)
        yield self.fake, Target(LOG)

    def received(self) -> list[dict[str, Any]]:
        return [n.as_json() for n in self.fake]


class TestLogNotifier(NotifierContract):
    @pytest.fixture
    def adapter(self, caplog: pytest.LogCaptureFixture) -> Iterator[tuple[Notifier, Target]]:
        self.caplog = caplog
        caplog.set_level(logging.INFO, logger="pulse.alerts")
        yield LogNotifier(), Target(LOG)

    def received(self) -> list[dict[str, Any]]:
        return [r.alert for r in self.caplog.records if r.name == "pulse.alerts"]


class _Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint that answers 503 to the first ``failures`` requests."""

    failures = 2
    refusal = 503
    requests: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    accepted: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((dict(self.headers), body))
        if len(type(self).requests) <= type(self).failures:
            self.send_response(type(self).refusal)
            self.end_headers()
            return
        type(self).accepted.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


class TestWebhookNotifier(NotifierContract):
    flaky = True

    @pytest.fixture
    def adapter(self) -> Iterator[tuple[Notifier, Target]]:
        receiver = type("Receiver", (_Receiver,), {"requests": [], "accepted": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), receiver)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.receiver = receiver
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/pulse"
        yield WebhookNotifier(timeout=5), Target(WEBHOOK, url=url, secret=SECRET)
        server.shutdown()
        server.server_close()

    def received(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.receiver.accepted]

    def check_received(self, body: dict[str, Any]) -> None:
        assert len(self.receiver.requests) == 3, "two refusals, then the one delivery"
        headers, raw = self.receiver.accepted[0]
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
        assert headers[DELIVERY_HEADER] == body["id"]
        assert headers["Content-Type"] == "application/json"

    def test_a_client_error_is_not_retried_and_is_recorded_as_failed(self, adapter: tuple[Notifier, Target]) -> None:
        notifier, target = adapter
        self.receiver.failures, self.receiver.refusal = 10, 410
        outbox = Outbox(MemoryEventStore(), {WEBHOOK: notifier}, sleep=lambda _: None)
        failed = outbox.deliver(RULE, notification(), target)
        assert failed is not None and failed.status == "failed" and failed.status_codes == (410,)
        assert len(self.receiver.requests) == 1, "a 410 will not pass: no retry"
        assert [d.status for d in outbox.deliveries(RULE)] == ["failed"]

    def test_an_unreachable_endpoint_is_recorded_as_failed_after_its_retries(self) -> None:
        target = Target(WEBHOOK, url="http://127.0.0.1:9/nothing-listens", secret=SECRET)
        outbox = Outbox(MemoryEventStore(), {WEBHOOK: WebhookNotifier(timeout=1)}, sleep=lambda _: None)
        failed = outbox.deliver(RULE, notification(), target)
        assert failed is not None and failed.status == "failed" and failed.attempts == 4
        assert failed.error and "unreachable" in failed.error


class TestSnsNotifier(NotifierContract):
    @pytest.fixture
    def adapter(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Notifier, Target]]:
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
            monkeypatch.setenv(name, value)
        with mock_aws():
            sns = boto3.client("sns", region_name="us-east-1")
            sqs = boto3.client("sqs", region_name="us-east-1")
            topic = sns.create_topic(Name="pulse-alerts")["TopicArn"]
            self.queue = sqs.create_queue(QueueName="alerts-read-back")["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
            self.sqs = sqs
            # The topic is the default (PULSE_SNS_TOPIC_ARN), the target names none.
            yield SnsNotifier.create("us-east-1", topic), Target(SNS)

    def received(self) -> list[dict[str, Any]]:
        self.envelopes = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                break
            for message in messages:
                self.envelopes.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(envelope["Message"]) for envelope in self.envelopes]

    def check_received(self, body: dict[str, Any]) -> None:
        attributes = {k: v["Value"] for k, v in self.envelopes[0]["MessageAttributes"].items()}
        assert attributes == {"severity": "CRITICAL", "rule": RULE, "kind": "firing", "transitionId": body["id"]}

    def test_without_a_topic_the_delivery_fails_visibly(self) -> None:
        outbox = Outbox(MemoryEventStore(), {SNS: SnsNotifier(client=None)}, sleep=lambda _: None)
        failed = outbox.deliver(RULE, notification(), Target(SNS))
        assert failed is not None and failed.status == "failed" and "PULSE_SNS_TOPIC_ARN" in (failed.error or "")
