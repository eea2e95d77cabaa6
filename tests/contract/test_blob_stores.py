"""The blob-store port on its three adapters: a local folder, S3 (moto) and the fake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from domain.blobs import BlobNotFound, BlobStore, MemoryBlobStore
from storage.blob_local import LocalBlobStore
from storage.blob_s3 import S3BlobStore


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 bucket (no network), credentials of its own."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="pulse-archive")
        yield "pulse-archive"


def make_blob_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> BlobStore:
    if kind == "local":
        return LocalBlobStore(tmp_path / "archive")
    if kind == "s3":
        return S3BlobStore(request.getfixturevalue("s3_bucket"), region="us-east-1")
    return MemoryBlobStore()


@pytest.fixture(params=["local", "s3", "memory"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return make_blob_store(request.param, tmp_path, request)


def test_put_get_replace(blobs: BlobStore) -> None:
    assert isinstance(blobs, BlobStore)
    blobs.put("a/b/c.parquet", b"one")
    assert blobs.get("a/b/c.parquet") == b"one"
    blobs.put("a/b/c.parquet", b"two, longer")
    assert blobs.get("a/b/c.parquet") == b"two, longer"
    blobs.put("empty", b"")
    assert blobs.get("empty") == b""


def test_a_missing_key(blobs: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        blobs.get("nothing/here")
    with pytest.raises(KeyError):  # BlobNotFound is a KeyError too
        blobs.get("nothing")
    blobs.delete("nothing/here")  # not an error


def test_list_by_prefix_sorted(blobs: BlobStore) -> None:
    keys = [
        "p/type=sale/date=2026-11-01/hour=05/log-1-2.parquet",
        "p/type=sale/date=2026-11-01/hour=04/log-3-4.parquet",
        "p/type=visit/date=2026-11-02/hour=00/log-1-2.parquet",
        "p/_state/archive/log.json",
        "q/other",
    ]
    for key in keys:
        blobs.put(key, key.encode())
    assert blobs.list() == sorted(keys)
    assert blobs.list("p/") == sorted(k for k in keys if k.startswith("p/"))
    assert blobs.list("p/type=sale/") == sorted(k for k in keys if k.startswith("p/type=sale/"))
    assert blobs.list("p/type=s") == sorted(k for k in keys if k.startswith("p/type=s"))
    assert blobs.list("p/type=sale/date=2026-11-01/hour=05/log") == [keys[0]]
    assert blobs.list("nope/") == []


def test_delete(blobs: BlobStore) -> None:
    blobs.put("x/1", b"1")
    blobs.put("x/2", b"2")
    blobs.delete("x/1")
    assert blobs.list("x/") == ["x/2"]
    with pytest.raises(BlobNotFound):
        blobs.get("x/1")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a"])
def test_bad_keys_are_refused(blobs: BlobStore, key: str) -> None:
    with pytest.raises(ValueError):
        blobs.put(key, b"x")


def test_local_puts_are_atomic_and_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.put("a/b", b"old")
    (tmp_path / "a" / ".b.1234.tmp").write_bytes(b"half a write")  # a crash mid-put
    store.put("a/b", b"new")
    assert store.list() == ["a/b"] and store.get("a/b") == b"new"


def test_s3_retries_with_backoff_then_gives_up() -> None:
    from botocore.exceptions import ClientError

    from domain.blobs import BlobStoreError

    class Flaky:
        calls = 0

        def put_object(self, **_: object) -> None:
            Flaky.calls += 1
            if Flaky.calls < 3:
                raise ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "Put")

    sleeps: list[float] = []
    store = S3BlobStore("b", client=Flaky(), sleep=sleeps.append, attempts=4, base_delay=0.1)
    store.put("k", b"x")
    assert Flaky.calls == 3 and len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.6

    class Down:
        def put_object(self, **_: object) -> None:
            raise ClientError({"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "Put")

    with pytest.raises(BlobStoreError):
        S3BlobStore("b", client=Down(), sleep=lambda _: None, attempts=3).put("k", b"x")
