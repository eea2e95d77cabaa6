"""Amazon SNS as a notification target.

Publishes the notification's JSON to the target's topic (or the default topic,
``PULSE_SNS_TOPIC_ARN``) with message attributes ``severity``, ``rule``, ``kind`` and
``transitionId``, so subscription filter policies can route them. On a FIFO topic the
transition id is the deduplication id: SNS itself drops a repeat within five minutes.
"""

from __future__ import annotations

import json
from typing import Any

from domain.alerts import Target
from domain.notifiers import DeliveryFailed, Notification


class SnsNotifier:
    def __init__(self, client: Any, default_topic_arn: str | None = None) -> None:
        self.client = client
        self.default_topic_arn = default_topic_arn

    @classmethod
    def create(cls, region: str, default_topic_arn: str | None, endpoint_url: str | None = None) -> SnsNotifier:
        import boto3

        return cls(boto3.client("sns", region_name=region, endpoint_url=endpoint_url), default_topic_arn)

    def send(self, notification: Notification, target: Target) -> int | None:
        topic = target.topic_arn or self.default_topic_arn
        if not topic:
            raise DeliveryFailed("no SNS topic: give the target a topicArn or set PULSE_SNS_TOPIC_ARN", retry=False)
        attributes = {
            "severity": notification.severity,
            "rule": notification.rule,
            "kind": notification.kind,
            "transitionId": notification.id,
        }
        request: dict[str, Any] = {
            "TopicArn": topic,
            "Message": json.dumps(notification.as_json(), sort_keys=True),
            "Subject": notification.message[:100] or notification.rule,
            "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        }
        if topic.endswith(".fifo"):
            request["MessageGroupId"] = notification.rule
            request["MessageDeduplicationId"] = notification.id
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.publish(**request)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise DeliveryFailed(f"SNS refused: {exc}", status_code=status, retry=(status or 500) >= 500) from exc
        except BotoCoreError as exc:
            raise DeliveryFailed(f"SNS unreachable: {exc}") from exc
        return answer.get("ResponseMetadata", {}).get("HTTPStatusCode", 200)
