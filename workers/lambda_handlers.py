"""Lambda handlers, deployed with the API by Zappa (see docs/aws.md).

``on_event_stream(event, context)``: the DynamoDB Streams event source of the events
table. It runs the same projection engine as the poller (every read model) and answers
``{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}`` (the mapping must
have ``FunctionResponseTypes: ReportBatchItemFailures``; `pulse deploy wire-streams`
sets it). Records are applied in order; on a failure the response names the first
record not applied, as AWS requires for ordered sources, and Lambda retries from there.
A batch is acknowledged only once every read model is past it: the archive, which
buffers elsewhere, writes its Parquet files (S3) before the handler returns (the
engine's ``flush``), and its checkpoint moves only past what is in a file.
Retried batches may start or end elsewhere than the failed one; the items' guards make
that exact too (see ``storage/dynamodb_views.py``).

A Lambda stream event does not say which shard it comes from, yet the guards and the
checkpoint are per shard: the handler finds the shard whose sequence-number range holds
the batch's first record (DescribeStream, cached per container), and when several open
shards' ranges hold it, asks each with GetShardIterator(AT_SEQUENCE_NUMBER) + one
GetRecords which one has that record. With ParallelizationFactor 1 (wire-streams sets
it) Lambda processes a shard's batches one at a time and moves to a child shard only
after its parent, so the parent is marked finished when a child is first seen.

``run_rebuilds(event, context)``: scheduled every minute; brings the views to the
latest metric definitions (``run_pending_rebuild``), e.g. after ``defineMetric``.

``alert_tick(event, context)``: scheduled every minute; evaluates every alert rule for
what time alone changes (``for`` elapsing, a window sliding, data going missing) and
delivers what the outbox owes (SNS, webhooks), including what a batch left owed.
Transitions a stream batch records are delivered right after the batch is applied.

Settings come from ``PULSE_*`` environment variables (``Settings.from_env``), plus
``PULSE_REBUILD_FENCE_SECONDS`` and ``PULSE_REBUILD_SETTLE_SECONDS``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from bootstrap import Pulse, bootstrap
from domain.settings import Settings
from services.alert_evaluation import AlertsHandler
from services.engine import ProjectionEngine
from storage.dynamodb_feed import ChangeRecord, Shard, decode_record, list_shards, sequence_number
from workers.dynamodb_poller import feed_batch
from workers.dynamodb_rebuild import RebuildInterrupted, run_pending_rebuild

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

SHARD_LIST_SECONDS = 60.0
#: A scheduled rebuild stops this long before the Lambda would be cut off.
DEADLINE_MARGIN_SECONDS = 5.0


def _in_range(shard: Shard, sequence: int) -> bool:
    start = int(shard.starting_sequence_number)
    end = None if shard.ending_sequence_number is None else int(shard.ending_sequence_number)
    return start <= sequence and (end is None or sequence <= end)


def locate_shard(shards: Sequence[Shard], sequence: str, holds: Callable[[str, str], bool]) -> Shard | None:
    """The shard holding the record ``sequence``: the only one whose range holds it, or
    among several the one ``holds(shard_id, sequence)`` confirms; None if none does."""
    number = int(sequence)
    candidates = [shard for shard in shards if _in_range(shard, number)]
    if len(candidates) == 1:
        return candidates[0]
    for shard in candidates:
        if holds(shard.shard_id, sequence):
            return shard
    return None


class ShardLocator:
    """Finds a record's shard in a stream; caches the shard list per stream."""

    def __init__(self, streams: BaseClient, refresh_seconds: float = SHARD_LIST_SECONDS) -> None:
        self._streams = streams
        self.refresh_seconds = refresh_seconds
        self._listed: dict[str, tuple[float, list[Shard]]] = {}

    def shards(self, stream_arn: str, fresh: bool = False) -> list[Shard]:
        cached = self._listed.get(stream_arn)
        if fresh or cached is None or time.monotonic() - cached[0] > self.refresh_seconds:
            cached = self._listed[stream_arn] = (time.monotonic(), list_shards(self._streams, stream_arn))
        return cached[1]

    def holds(self, stream_arn: str, shard_id: str, sequence: str) -> bool:
        """Whether ``shard_id``'s record at ``sequence`` is that very record."""
        try:
            iterator = self._streams.get_shard_iterator(
                StreamArn=stream_arn,
                ShardId=shard_id,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=sequence_number(sequence),
            )["ShardIterator"]
            records = self._streams.get_records(ShardIterator=iterator, Limit=1).get("Records", [])
        except ClientError:
            return False
        return bool(records) and int(records[0]["dynamodb"]["SequenceNumber"]) == int(sequence)

    def locate(self, stream_arn: str, sequence: str) -> Shard:
        for fresh in (False, True):  # a new shard is not in a cached list yet
            found = locate_shard(
                self.shards(stream_arn, fresh), sequence, lambda shard_id, seq: self.holds(stream_arn, shard_id, seq)
            )
            if found is not None:
                return found
        raise LookupError(f"no shard of {stream_arn} holds sequence number {sequence}")


@dataclass
class Runtime:
    """What one Lambda container keeps between invocations."""

    pulse: Pulse
    engine: ProjectionEngine
    locator: ShardLocator
    marked_parents: set[str]

    @property
    def settings(self) -> Settings:
        return self.pulse.settings

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Runtime:
        from storage.dynamodb_base import make_client

        pulse = bootstrap(Settings.from_env(env))
        locator = ShardLocator(make_client(pulse.settings, "dynamodbstreams"))
        return cls(pulse, pulse.engine(), locator, set())


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime.from_env(os.environ)
        return _runtime


def reset_runtime() -> None:
    """Forget the cached container state (settings changed, e.g. between tests)."""
    global _runtime
    with _runtime_lock:
        _runtime = None


def _failure(record: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    return {"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}


def _apply(state: Runtime, stream_arn: str, records: list[ChangeRecord]) -> None:
    shard = state.locator.locate(stream_arn, records[0].sequence_number)
    parent = shard.parent_shard_id
    if parent and parent not in state.marked_parents:
        # Lambda reads a child only once its parent is done: the parent is finished.
        listed = {s.shard_id for s in state.locator.shards(stream_arn)}
        if parent in listed:
            state.pulse.backend.counters().mark_finished(parent)
        state.marked_parents.add(parent)
    batch = feed_batch(shard.shard_id, records)
    state.engine.prepare()  # as the poller does before each step (the archive's typed columns)
    handled = state.engine.handle(batch)
    if handled.failed:
        raise RuntimeError(f"projections {', '.join(handled.failed)} failed the batch; it is retried")
    if state.engine.behind(shard.shard_id):
        raise RuntimeError("a projection backing off after an error missed the batch; it is retried")
    # Lambda acknowledges the batch when the handler returns: what a read model buffers
    # (the archive) goes to its files now, and every read model must be past the batch
    # (one whose file could not be written is not).
    state.engine.flush()
    behind = [h.name for h in state.engine.handlers if h.position(shard.shard_id) < batch.upto]
    if behind:
        raise RuntimeError(f"projections {', '.join(behind)} are not past the batch; it is retried")
    _deliver_owed(state)


def _alerts(state: Runtime) -> AlertsHandler | None:
    return next((h for h in state.engine.handlers if isinstance(h, AlertsHandler)), None)


def _deliver_owed(state: Runtime) -> list[Any]:
    """Deliver what the batch's transitions owe; a failure is logged and left owed for the
    tick, never failing the batch (its transitions are recorded already)."""
    handler = _alerts(state)
    if handler is not None:
        handler.flush()  # evaluate what the batch changed now: the container may sleep next
    owed = handler.take_owed() if handler is not None else []
    if not owed:
        return []
    try:
        return state.pulse.alerts.outbox.drain(owed)
    except Exception:
        log.exception("alert deliveries of %s failed; the next tick retries them", ", ".join(owed))
        return []


def on_event_stream(event: Mapping[str, Any], context: Any = None) -> dict[str, list[dict[str, str]]]:
    """Project a DynamoDB Streams batch; report the first record not applied."""
    raw_records = list(event.get("Records") or ())
    if not raw_records:
        return {"batchItemFailures": []}
    state = runtime()
    decoded: list[ChangeRecord] = []
    undecodable: Mapping[str, Any] | None = None
    for raw in raw_records:
        try:
            decoded.append(decode_record(raw))
        except (KeyError, TypeError, ValueError) as exc:
            log.error("stream record %s cannot be read (%s): it and the records after it are retried", raw, exc)
            undecodable = raw
            break
    if decoded:
        try:
            _apply(state, raw_records[0]["eventSourceARN"], decoded)
        except Exception:
            log.exception("batch of %d records failed; Lambda retries it from its first record", len(decoded))
            return _failure(raw_records[0])
    if undecodable is not None:
        return _failure(undecodable)
    return {"batchItemFailures": []}


def run_rebuilds(event: Mapping[str, Any] | None = None, context: Any = None) -> dict[str, Any]:
    """Scheduled (every minute): rebuild the metrics and gauges whose definitions changed.

    A rebuild waits ``fence + settle`` seconds (150 s by default) before it reads the
    facts, longer than the function's timeout: the first call registers it, and the
    calls after, under the same owner (the function's name), carry it on until it has
    settled; the scan then has what is left of that call's time.
    """
    state = runtime()
    owner = f"lambda-{os.environ.get('AWS_LAMBDA_FUNCTION_NAME', 'pulse')}"
    deadline = None
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is not None:
        deadline = time.time() + remaining() / 1000 - DEADLINE_MARGIN_SECONDS
    projector = state.pulse.backend.counters()
    try:
        rebuilt = run_pending_rebuild(
            projector.events,
            projector.views,
            projector.bucketing,
            projector.history,
            owner,
            state.pulse.backend.timing,
            deadline=deadline,
        )
    except RebuildInterrupted as exc:
        log.error("rebuild abandoned: %s", exc)
        return {"rebuilt": None, "error": str(exc)}
    if rebuilt is None:
        build = projector.views.definitions_state().build
        return {"rebuilt": None, "pending": None if build is None else build.version}
    return {
        "rebuilt": {
            "metrics": rebuilt.metrics,
            "gauges": rebuilt.gauges,
            "facts": rebuilt.facts,
            "definitionsVersion": rebuilt.definitions_version,
        }
    }


def alert_tick(event: Mapping[str, Any] | None = None, context: Any = None) -> dict[str, Any]:
    """Scheduled (every minute): evaluate every alert rule now, then deliver everything owed."""
    state = runtime()
    handler = _alerts(state)
    recorded = handler.tick(state.pulse.clock.now()) if handler is not None else []
    if handler is not None:
        handler.take_owed()  # the drain below covers every rule
    deliveries = state.pulse.alerts.outbox.drain()
    return {
        "transitions": len(recorded),
        "delivered": sum(1 for d in deliveries if d.status == "delivered"),
        "failed": sum(1 for d in deliveries if d.status == "failed"),
    }


__all__ = [
    "ShardLocator",
    "alert_tick",
    "locate_shard",
    "on_event_stream",
    "reset_runtime",
    "run_rebuilds",
    "runtime",
]
