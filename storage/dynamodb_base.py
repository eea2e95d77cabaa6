"""What the DynamoDB adapters do alike: clients, errors, paging, batches and writer threads.

- ``make_client``: a low-level client with the retry and timeout settings below.
- ``unavailable``: maps "DynamoDB is not answering" (connection errors, timeouts,
  throttling past botocore's retries, a missing table) to ``StoreUnavailable``; a request
  this code got wrong (ValidationException) and a failed condition pass through as they are.
- ``Table``: one table's calls under that mapping: Get/Put/UpdateItem (a failed
  condition raises ``ConditionFailed``), Query and Scan read to their last page,
  BatchGetItem and BatchWriteItem resent until nothing is unprocessed.
- ``retry_unprocessed``: that resending, with backoff and a deadline.
- ``WriterPool``: a few threads for independent writes, which DynamoDB serves in parallel.
- ``item_size``: what DynamoDB counts of an item against its limits and in write units.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import StoreUnavailable
from domain.settings import Settings

Item = dict[str, Any]
T = TypeVar("T")
R = TypeVar("R")

# DynamoDB's limits (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html).
MAX_ITEM_BYTES = 400 * 1024  # attribute names included
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
BATCH_GET_KEYS = 100
BATCH_WRITE_ITEMS = 25

#: The attribute both tables expire items by (epoch seconds); ``pulse tables create`` turns TTL on.
TTL_ATTRIBUTE = "expiresAt"

# Room for the writer threads plus the request threads (gunicorn gthread) sharing a client.
MAX_POOL_CONNECTIONS = 32
WRITE_DEADLINE_SECONDS = 30.0

_THROTTLED = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
#: Error codes re-raised as they are: a request this code got wrong (a bug, not an outage)
#: and a failed condition (an outcome the caller handles).
PASS_THROUGH = frozenset({"ValidationException", "ConditionalCheckFailedException"})
#: ``(write kind, item bytes)`` per write request, for cost accounting (bench).
WriteMeter = Callable[[str, int], None]


def client_config() -> Config:
    """botocore settings shared by the stores and the change feed."""
    return Config(
        # standard mode retries throttling, 5xx and TransactionInProgress with backoff;
        # 3 attempts keep a dead endpoint's answer (StoreUnavailable) within seconds.
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=2,
        read_timeout=10,
        max_pool_connections=MAX_POOL_CONNECTIONS,
        tcp_keepalive=True,
    )


def make_client(settings: Settings, service: str = "dynamodb") -> BaseClient:
    """A low-level client for ``service``; credentials come from the default chain."""
    # A session per client: boto3's default session is not safe to share across threads.
    session = boto3.session.Session()
    return session.client(
        service,
        region_name=settings.region,
        endpoint_url=settings.dynamodb_endpoint,
        config=client_config(),
    )


# ---------------------------------------------------------------------------- errors


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def is_condition_failed(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


class ConditionFailed(Exception):
    """A conditional write's condition did not hold; ``item`` is the stored item when the
    request asked for it (``ReturnValuesOnConditionCheckFailure``), else empty."""

    def __init__(self, item: Mapping[str, Any]) -> None:
        super().__init__("the condition of the write did not hold")
        self.item = item


@contextmanager
def unavailable(
    subject: str, action: str, *, passthrough: Collection[str] = PASS_THROUGH, missing: str | None = None
) -> Iterator[None]:
    """Raise ``StoreUnavailable("<subject>: <action> failed: ...")`` for what means the
    store is not answering; error codes in ``passthrough`` are re-raised unchanged, and a
    ResourceNotFoundException says ``missing`` when given."""
    try:
        yield
    except BotoCoreError as exc:  # connection refused, timeouts, ...
        raise StoreUnavailable(f"{subject}: {action} failed: {exc}") from exc
    except ClientError as exc:
        code = error_code(exc)
        if code in passthrough:
            raise
        if missing is not None and code == "ResourceNotFoundException":
            raise StoreUnavailable(missing) from exc
        raise StoreUnavailable(f"{subject}: {action} failed: {exc}") from exc


# ----------------------------------------------------------------------------- items


def _number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").strip("0") or "0"
    # 1 byte per two significant digits plus 1; one more for a sign, to err on the safe side.
    return (len(digits) + 1) // 2 + 1 + text.startswith("-")


def item_size(item: Mapping[str, Mapping[str, str]]) -> int:
    """Bytes DynamoDB counts against its 400 KB item limit: names plus values (S and N)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        ((kind, raw),) = value.items()
        if kind == "S":
            size += len(raw.encode())
        elif kind == "N":
            size += _number_size(raw)
        else:
            raise ValueError(f"attribute {name!r} has type {kind}; only S and N attributes are measured")
    return size


# --------------------------------------------------------------------------- batches


def chunked(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def _pending(request: Mapping[str, Any]) -> int:
    """Items or keys left in a BatchWriteItem / BatchGetItem request."""
    return sum(len(value["Keys"]) if isinstance(value, Mapping) else len(value) for value in request.values())


def retry_unprocessed(
    send: Callable[[dict[str, Any]], Mapping[str, Any] | None],
    request: dict[str, Any],
    *,
    what: str,
    deadline_seconds: float = WRITE_DEADLINE_SECONDS,
    base_delay: float = 0.05,
    max_delay: float = 2.0,
) -> None:
    """Send ``request`` and then what ``send`` returns as unprocessed, until nothing is left.

    A call refused outright for throttling counts as nothing processed. Waits between
    rounds with exponential backoff and full jitter (AWS's advice for batch calls), and
    raises ``StoreUnavailable`` once ``deadline_seconds`` have passed.
    """
    deadline = time.monotonic() + deadline_seconds
    attempt = 0
    pending: Mapping[str, Any] | None = request
    while pending:
        try:
            pending = send(dict(pending))
        except ClientError as exc:
            if error_code(exc) not in _THROTTLED:
                raise
            # botocore's own retries ran out while throttled: all of it is unprocessed.
        if not pending:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise StoreUnavailable(
                f"{what}: DynamoDB still left {_pending(pending)} items unprocessed after {deadline_seconds:g} s"
                " (throttled); part of the batch may be stored, and sending the same batch again is safe"
            )
        time.sleep(min(left, random.uniform(0, min(max_delay, base_delay * 2**attempt))))
        attempt += 1


class WriterPool:
    """Threads for independent DynamoDB calls, started on first use."""

    def __init__(self, threads: int, name: str) -> None:
        self._threads = threads
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def each(self, work: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``work`` over ``items`` on the threads (inline for one item), results in order;
        waits for all before raising the first error, so none is left running."""
        if len(items) <= 1:
            return [work(item) for item in items]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix=self._name)
            pool = self._pool
        futures = [pool.submit(work, item) for item in items]
        results: list[R] = []
        error: BaseException | None = None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # re-raised below, once the other items are done
                error = error or exc
        if error is not None:
            raise error
        return results

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


# ----------------------------------------------------------------------------- table


class Table:
    """One table's calls, with botocore's failures mapped by ``unavailable``.

    ``meter``, when set, is told the size of each write that ``metered`` is called for.
    """

    def __init__(
        self,
        client: BaseClient,
        name: str,
        *,
        write_deadline_seconds: float = WRITE_DEADLINE_SECONDS,
        meter: WriteMeter | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.write_deadline_seconds = write_deadline_seconds
        self.meter = meter

    def errors(self, action: str) -> AbstractContextManager[None]:
        return unavailable(
            f"DynamoDB table {self.name}",
            action,
            missing=f"DynamoDB table {self.name} does not exist; run `pulse tables create`",
        )

    @contextmanager
    def _conditional(self, action: str) -> Iterator[None]:
        try:
            with self.errors(action):
                yield
        except ClientError as exc:
            if not is_condition_failed(exc):
                raise
            raise ConditionFailed(exc.response.get("Item", {})) from exc

    def get(self, key: Item, action: str, *, consistent: bool = True) -> Item | None:
        with self.errors(action):
            return self.client.get_item(TableName=self.name, Key=key, ConsistentRead=consistent).get("Item")

    def put(self, action: str, **request: Any) -> Mapping[str, Any]:
        """PutItem; ``ConditionFailed`` when its condition did not hold."""
        with self._conditional(action):
            return self.client.put_item(TableName=self.name, **request)

    def update(self, action: str, **request: Any) -> Mapping[str, Any]:
        """UpdateItem; ``ConditionFailed`` when its condition did not hold."""
        with self._conditional(action):
            return self.client.update_item(TableName=self.name, **request)

    def metered(self, kind: str, item: Mapping[str, Any] | None) -> None:
        if self.meter is not None:
            self.meter(kind, item_size(item) if item else 1)

    def update_metered(self, kind: str, **request: Any) -> Item:
        """UpdateItem returning the new item; ``ConditionFailed`` carries the old one. Both
        are metered as one write of ``kind``."""
        try:
            response = self.update(
                f"updating a {kind} item",
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **request,
            )
        except ConditionFailed as failed:
            self.metered(kind, failed.item)
            raise
        item = response.get("Attributes", {})
        self.metered(kind, item)
        return item

    def query(self, request: Mapping[str, Any], action: str) -> Iterator[Item]:
        """Every item a Query returns, page after page."""
        return self._pages(self.client.query, request, action)

    def scan(self, request: Mapping[str, Any], action: str) -> Iterator[Item]:
        """Every item a Scan returns, page after page."""
        return self._pages(self.client.scan, request, action)

    def _pages(self, call: Callable[..., Mapping[str, Any]], request: Mapping[str, Any], action: str) -> Iterator[Item]:
        request = {"TableName": self.name, **request}
        while True:
            with self.errors(action):
                response = call(**request)
            yield from response["Items"]
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def batch_get(self, keys: Sequence[Item], action: str, **options: Any) -> list[Item]:
        """The stored items of ``keys`` (at most ``BATCH_GET_KEYS``: one BatchGetItem), in
        no particular order; ``options`` go with the keys (ProjectionExpression, ...)."""
        found: list[Item] = []

        def send(request: dict[str, Any]) -> Mapping[str, Any] | None:
            response = self.client.batch_get_item(RequestItems=request)
            found.extend(response["Responses"].get(self.name, []))
            return response.get("UnprocessedKeys")

        request = {self.name: {"Keys": list(keys), **options}}
        with self.errors(action):
            retry_unprocessed(send, request, what=action, deadline_seconds=self.write_deadline_seconds)
        return found

    def batch_write(self, requests: Sequence[Mapping[str, Any]], action: str) -> None:
        """PutRequests and DeleteRequests (at most ``BATCH_WRITE_ITEMS``: one BatchWriteItem)."""

        def send(request: dict[str, Any]) -> Mapping[str, Any] | None:
            return self.client.batch_write_item(RequestItems=request).get("UnprocessedItems")

        with self.errors(action):
            retry_unprocessed(
                send, {self.name: list(requests)}, what=action, deadline_seconds=self.write_deadline_seconds
            )

    def delete_keys(self, keys: Sequence[Item], action: str) -> None:
        """Delete the items of ``keys``, ``BATCH_WRITE_ITEMS`` per call."""
        for chunk in chunked(keys, BATCH_WRITE_ITEMS):
            self.batch_write([{"DeleteRequest": {"Key": key}} for key in chunk], action)
