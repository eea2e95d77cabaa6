"""The archive on AWS: the Lambda handler and the Streams poller (DynamoDB Local) run the
same archive read model into S3 (moto): every fact in exactly one live Parquet file after
a batch delivered twice, part of a batch delivered again, and a worker killed in the
middle of writing a batch's files; Lambda acknowledges a batch only once its files are
written."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import boto3
import pyarrow as pa
import pytest
from moto.server import ThreadedMotoServer

from bootstrap import bootstrap
from domain import metrics as defs
from domain.blobs import BlobStore
from projections.archive import live_files, read_table
from projections.buckets import Bucketing
from projections.recent import RecentEventsProjection
from services.archive import ArchiveHandler, archive_files
from services.engine import ProjectionEngine, ReadModelHandler
from storage.blob_s3 import S3BlobStore
from storage.dynamodb_recent import DynamoRecentEvents
from tests.dynamodb_projections.conftest import DynamoRig
from tests.dynamodb_projections.test_lambda_handler import Capture, recent_events
from tests.projections.oracle import all_facts
from workers import lambda_handlers
from workers.dynamodb_poller import DynamoPoller
from workers.lambda_handlers import on_event_stream
from workers.stream_projector import StreamProjector

PREFIX = "archive"
OK = {"batchItemFailures": []}


class Killed(BaseException):
    """The process dies here (a BaseException: nothing on the way catches it)."""


class DiesMidFlush:
    """A blob store that dies after ``files`` Parquet files of a flush were written."""

    def __init__(self, inner: BlobStore, files: int) -> None:
        self.inner = inner
        self.files = files

    def put(self, key: str, data: bytes) -> None:
        if key.endswith(".parquet"):
            if self.files == 0:
                raise Killed(key)
            self.files -= 1
        self.inner.put(key, data)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 as a server on its own port (mocking boto3 in process would take DynamoDB
    Local's calls too)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> S3BlobStore:
    """A fresh bucket of its own per test."""
    name = f"pulse-archive-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name="us-east-1", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return S3BlobStore(name, region="us-east-1", endpoint_url=s3_endpoint)


def archived_ids(blobs: BlobStore) -> Counter[str]:
    """How many times each fact is in the live archive files (what readers read)."""
    ids: Counter[str] = Counter()
    for key in live_files(archive_files(blobs, PREFIX)):
        ids.update(read_table(blobs.get(key)).column("id").to_pylist())
    return ids


def assert_each_fact_once(rig: DynamoRig, blobs: BlobStore) -> None:
    facts = Counter(f.id for f in all_facts(rig.events))
    assert archived_ids(blobs) == facts and facts


@pytest.fixture
def lambda_archive(
    make_dynamo_rig: Callable[..., DynamoRig], bucket: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DynamoRig]:
    """The handler's container configured from PULSE_* variables, with the archive in S3."""
    rig = make_dynamo_rig()
    for name, value in {
        "PULSE_STORE": "dynamodb",
        "PULSE_DYNAMODB_ENDPOINT": rig.settings.dynamodb_endpoint or "",
        "PULSE_REGION": rig.settings.region or "us-east-1",
        "PULSE_TABLE_PREFIX": rig.settings.table_prefix,
        "PULSE_ARCHIVE": "on",
        "PULSE_ARCHIVE_BUCKET": bucket.bucket,
        "PULSE_ARCHIVE_ENDPOINT": bucket.client.meta.endpoint_url,
        "PULSE_ARCHIVE_PREFIX": PREFIX,
    }.items():
        monkeypatch.setenv(name, value)
    lambda_handlers.reset_runtime()
    yield rig
    lambda_handlers.reset_runtime()


def archive_of_runtime() -> ArchiveHandler:
    (found,) = [h for h in lambda_handlers.runtime().engine.handlers if isinstance(h, ArchiveHandler)]
    return found


def test_lambda_writes_each_batch_before_acknowledging_it_and_every_fact_lands_once(
    lambda_archive: DynamoRig, bucket: S3BlobStore
) -> None:
    rig = lambda_archive
    capture = Capture(rig)
    try:
        defs.define_metric(rig.events, defs.validate_metric("revenue", "sale", "sum", "amount", ["category"]))
        rig.events.ingest(recent_events(40, seed=21, prefix="a"))
        first = capture.lambda_event(capture.next_records())
        assert on_event_stream(first, None) == OK
        assert_each_fact_once(rig, bucket)  # written before the handler returned
        sale_file = next(k for k in live_files(archive_files(bucket, PREFIX)) if "/type=sale/" in k)
        schema = read_table(bucket.get(sale_file)).schema  # the metric's properties are typed columns
        assert schema.field("amount").type == pa.float64() and schema.field("category").type == pa.string()
        written = {key: bucket.get(key) for key in archive_files(bucket, PREFIX)}

        assert on_event_stream(first, None) == OK  # Lambda delivers a batch again
        assert {key: bucket.get(key) for key in archive_files(bucket, PREFIX)} == written

        rig.events.ingest(recent_events(40, seed=22, prefix="b"))
        second = capture.lambda_event(capture.next_records())
        archive = archive_of_runtime()
        archive.blobs = DiesMidFlush(archive.blobs, files=1)
        with pytest.raises(Killed):
            on_event_stream(second, None)  # the container dies with one file of the batch written

        lambda_handlers.reset_runtime()  # Lambda starts a new container and delivers the batch again,
        first_record = second["Records"][0]["dynamodb"]["SequenceNumber"]
        # first cut short: the interrupted range cannot be written in part, so it is not acknowledged,
        short = {"Records": second["Records"][:5]}
        assert on_event_stream(short, None) == {"batchItemFailures": [{"itemIdentifier": first_record}]}
        assert on_event_stream(second, None) == OK  # then whole
        assert on_event_stream({"Records": second["Records"][7:]}, None) == OK  # and part of it again
        assert_each_fact_once(rig, bucket)

        (shard,) = rig.feed.shards()
        state = archive_of_runtime().state(shard.shard_id)
        assert state.position == int(second["Records"][-1]["dynamodb"]["SequenceNumber"])
        assert state.pending is None and state.events_total == 80
    finally:
        capture.close()


def test_lambda_does_not_acknowledge_a_batch_while_the_archive_backs_off(
    lambda_archive: DynamoRig, bucket: S3BlobStore
) -> None:
    rig = lambda_archive
    capture = Capture(rig)
    try:
        rig.events.ingest(recent_events(10, seed=23, prefix="c"))
        event = capture.lambda_event(capture.next_records())
        archive = archive_of_runtime()
        real = archive.blobs

        class Unavailable(DiesMidFlush):
            def put(self, key: str, data: bytes) -> None:
                raise OSError("S3 is unreachable")

        archive.blobs = Unavailable(real, 0)
        first_record = event["Records"][0]["dynamodb"]["SequenceNumber"]
        assert on_event_stream(event, None) == {"batchItemFailures": [{"itemIdentifier": first_record}]}
        archive.blobs = real
        # Redelivered at once, while the archive still backs off: still not acknowledged.
        assert on_event_stream(event, None) == {"batchItemFailures": [{"itemIdentifier": first_record}]}
        assert archived_ids(bucket) == Counter()
        engine = lambda_handlers.runtime().engine
        later = engine.clock() + 2 * engine.retry_seconds
        engine.clock = lambda: later  # the back-off is over
        assert on_event_stream(event, None) == OK
        assert_each_fact_once(rig, bucket)
    finally:
        capture.close()


def archive_poller(rig: DynamoRig, blobs: BlobStore) -> tuple[DynamoPoller, ArchiveHandler]:
    """`pulse worker` on DynamoDB: every read model on one engine, the archive buffering up
    to a few kilobytes (so a catch-up writes many files)."""
    projector = StreamProjector(rig.events, rig.views, Bucketing(rig.settings.timezone))
    archive = ArchiveHandler(blobs, prefix=PREFIX, max_bytes=4000, definitions=rig.events)
    recent = DynamoRecentEvents.from_settings(rig.settings, rig.views)
    engine = ProjectionEngine([projector, ReadModelHandler(RecentEventsProjection(), recent), archive])
    return DynamoPoller(engine, rig.feed, projector, read_limit=25), archive


def test_the_poller_archives_every_fact_once_through_a_kill_mid_flush_and_a_restart(
    rig: DynamoRig, bucket: S3BlobStore
) -> None:
    rig.events.ingest(recent_events(60, seed=24, prefix="d"))
    poller, _ = archive_poller(rig, bucket)
    poller.catch_up()
    assert_each_fact_once(rig, bucket)

    rig.events.ingest(recent_events(120, seed=25, prefix="e"))
    poller, archive = archive_poller(rig, bucket)
    archive.blobs = DiesMidFlush(bucket, files=3)
    with pytest.raises(Killed):
        poller.catch_up()  # killed while writing a flush's files

    # A new worker resumes from the stored checkpoints: the archive's is behind the other
    # read models', so it is delivered again what they have applied already.
    poller, archive = archive_poller(rig, bucket)
    poller.catch_up()
    assert_each_fact_once(rig, bucket)
    (shard,) = rig.feed.shards()
    assert archive.state(shard.shard_id).pending is None


def test_bootstrap_wires_the_archive_on_dynamodb_only_with_a_bucket(rig: DynamoRig, bucket: S3BlobStore) -> None:
    plain = bootstrap(rig.settings)
    try:
        assert "archive" not in [h.name for h in plain.backend.handlers()]
    finally:
        plain.close()
    with pytest.raises(ValueError, match="PULSE_ARCHIVE_BUCKET"):
        bootstrap(dataclasses.replace(rig.settings, archive="on")).backend.handlers()
    s3 = {"archive_bucket": bucket.bucket, "archive_endpoint": bucket.client.meta.endpoint_url}
    wired = bootstrap(dataclasses.replace(rig.settings, archive_prefix=PREFIX, **s3))
    try:
        (archive,) = [h for h in wired.backend.handlers() if h.name == "archive"]
        assert isinstance(archive, ArchiveHandler) and archive.blobs.location == f"s3://{bucket.bucket}"  # type: ignore[attr-defined]
    finally:
        wired.close()
