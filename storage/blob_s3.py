"""The blob store on S3: one object per key under a bucket (the archive on AWS).

A PUT replaces an object whole, so readers never see a part of one. Each call is retried
with exponential backoff and jitter on throttling, 5xx and connection errors (boto3's
own "standard" retries, plus ``attempts`` of ours around them); what still fails raises
``BlobStoreError``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from domain.blobs import BlobNotFound, BlobStoreError, check_key

T = TypeVar("T")

#: Error codes worth another try; anything else (access denied, no such bucket) is not.
RETRYABLE = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "ServiceUnavailable"}


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        client: Any | None = None,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        attempts: int = 4,
        base_delay: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bucket = bucket
        self.location = f"s3://{bucket}"
        self.client = client or boto3.session.Session().client(
            "s3",
            region_name=region,
            endpoint_url=endpoint_url,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )
        self.attempts = attempts
        self.base_delay = base_delay
        self._sleep = sleep

    def _call(self, what: str, call: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code in ("NoSuchKey", "404"):
                    raise
                if attempt == self.attempts or not (code in RETRYABLE or status >= 500):
                    raise BlobStoreError(f"{self.location}: {what}: {exc}") from exc
            except BotoCoreError as exc:
                if attempt == self.attempts:
                    raise BlobStoreError(f"{self.location}: {what}: {exc}") from exc
            self._sleep(self.base_delay * 2 ** (attempt - 1) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def put(self, key: str, data: bytes) -> None:
        check_key(key)
        self._call(f"put {key}", lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data))

    def get(self, key: str) -> bytes:
        try:
            found = self._call(f"get {key}", lambda: self.client.get_object(Bucket=self.bucket, Key=key))
        except ClientError:
            raise BlobNotFound(key) from None
        return found["Body"].read()

    def list(self, prefix: str = "") -> list[str]:
        def every() -> list[str]:
            keys: list[str] = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(item["Key"] for item in page.get("Contents", ()))
            return keys

        return sorted(self._call(f"list {prefix}", every))

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", lambda: self.client.delete_object(Bucket=self.bucket, Key=key))
