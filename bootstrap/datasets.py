"""Where datasets' rows are kept: the blob store from the settings.

On S3 when an archive bucket is set (``PULSE_ARCHIVE_BUCKET``, keys under ``datasets/``),
else a folder beside the db (``<db stem>.datasets``); the in-memory fake backend keeps them
with its other blobs.
"""

from __future__ import annotations

from pathlib import Path

from domain.blobs import BlobStore
from domain.settings import Settings


def dataset_blobs(settings: Settings) -> BlobStore:
    if settings.archive_bucket:
        from storage.blob_s3 import S3BlobStore

        return S3BlobStore(settings.archive_bucket, region=settings.region, endpoint_url=settings.archive_endpoint)
    if settings.store == "memory" or settings.db == ":memory:":
        from bootstrap.memory import database

        if settings.store == "memory":
            return database(settings).blobs
        from domain.blobs import MemoryBlobStore

        return MemoryBlobStore()
    from storage.blob_local import LocalBlobStore

    db = Path(settings.db)
    return LocalBlobStore(db.with_name(f"{db.stem}.datasets"))
