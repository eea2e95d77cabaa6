"""A DynamoDB Streams shard's lag: recorded by the poller from the records' approximate
creation time, and grown while its reader stays behind."""

from __future__ import annotations

import time

from domain.ports import Checkpoint
from services.engine import ProjectionEngine
from services.metrics import shard_lag_seconds
from storage.dynamodb_feed import ChangeRecord, decode_record
from workers.dynamodb_poller import DynamoPoller


class ShardLog:
    def __init__(self) -> None:
        self.lags: list[tuple[str, float]] = []

    def finished_partitions(self) -> set[str]:
        return set()

    def mark_finished(self, partition: str) -> None:
        return None

    def record_lag(self, partition: str, seconds: float) -> None:
        self.lags.append((partition, seconds))


def test_the_poller_records_the_age_of_the_newest_record_read_and_zero_once_caught_up() -> None:
    log = ShardLog()
    poller = DynamoPoller(ProjectionEngine([]), feed=None, shard_log=log)  # type: ignore[arg-type]
    created = time.time() - 90
    poller._note_lag("shard-1", [ChangeRecord("INSERT", "1", None, created)])
    poller._note_lag("shard-1", [ChangeRecord("INSERT", "2", None, created)])  # within 5 s: not again
    poller._note_lag("shard-1", [])
    poller._note_lag("shard-1", [])  # still caught up: not again
    assert [partition for partition, _ in log.lags] == ["shard-1", "shard-1"]
    assert log.lags[0][1] >= 90
    assert log.lags[1][1] == 0.0


def test_a_shard_behind_falls_further_behind_while_its_reader_is_stopped() -> None:
    measured = 1_800_000_000.0
    checkpoints = [
        Checkpoint("metrics", "behind", lag_seconds=12.5, lag_measured_at=int(measured * 1e6)),
        Checkpoint("metrics", "idle", lag_seconds=0.0, lag_measured_at=int(measured * 1e6)),
        Checkpoint("metrics", "never"),
    ]
    assert shard_lag_seconds(checkpoints, measured + 60) == {"behind": 72.5, "idle": 0.0}


def test_stream_records_carry_their_creation_time_from_get_records_or_lambda() -> None:
    from datetime import UTC, datetime

    raw = {"eventName": "REMOVE", "dynamodb": {"SequenceNumber": "7", "ApproximateCreationDateTime": 1_700_000_000}}
    assert decode_record(raw).created_at == 1_700_000_000.0
    raw["dynamodb"]["ApproximateCreationDateTime"] = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert decode_record(raw).created_at == 1_700_000_000.0
