"""Where datasets' rows go: beside the SQLite db by default, the archive bucket on AWS."""

from __future__ import annotations

from pathlib import Path

from bootstrap.datasets import dataset_blobs
from domain.settings import Settings
from storage.blob_local import LocalBlobStore
from storage.blob_s3 import S3BlobStore


def test_a_folder_beside_the_db(tmp_path: Path) -> None:
    blobs = dataset_blobs(Settings(store="sqlite", db=str(tmp_path / "shop.db")))
    assert isinstance(blobs, LocalBlobStore) and blobs.location == str(tmp_path / "shop.datasets")


def test_the_archive_bucket_on_aws() -> None:
    settings = Settings(store="dynamodb", archive_bucket="pulse-data", region="eu-west-1")
    blobs = dataset_blobs(settings)
    assert isinstance(blobs, S3BlobStore) and blobs.location == "s3://pulse-data"
