"""The archive's wiring: its blob store and its handler, from the settings.

- ``PULSE_ARCHIVE``: ``auto`` (default: on when pyarrow, the ``archive`` extra, is
  installed, and with the DynamoDB store when a bucket or folder is set), ``on`` (fail
  without them) or ``off``;
- where: ``PULSE_ARCHIVE_BUCKET`` (+ ``PULSE_ARCHIVE_PREFIX``, ``PULSE_ARCHIVE_ENDPOINT``)
  on S3, else the folder ``PULSE_ARCHIVE_DIR`` (default ``<db stem>.archive`` beside the
  db); the in-memory fake backend keeps its blobs beside its other stores;
- what: ``PULSE_ARCHIVE_COLUMNS``, ``PULSE_ARCHIVE_MAX_BYTES``, ``PULSE_ARCHIVE_MAX_AGE_SECONDS``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from domain.blobs import BlobStore
from domain.ports import EventStore
from domain.settings import Settings

if TYPE_CHECKING:
    from services.archive import ArchiveHandler


def archive_enabled(settings: Settings) -> bool:
    if settings.archive == "off":
        return False
    installed = importlib.util.find_spec("pyarrow") is not None
    if settings.archive == "on" and not installed:
        raise ValueError("PULSE_ARCHIVE=on needs pyarrow: pip install 'pulse[archive]'")
    if settings.store == "dynamodb" and not settings.archive_bucket and settings.archive_dir is None:
        # On AWS the archive is a bucket; a folder beside a db the store does not use is
        # nowhere a Lambda can write.
        if settings.archive == "on":
            raise ValueError(
                "PULSE_ARCHIVE=on with the DynamoDB store needs PULSE_ARCHIVE_BUCKET (or PULSE_ARCHIVE_DIR)"
            )
        return False
    if settings.store != "memory" and not settings.archive_bucket and settings.db == ":memory:":
        return settings.archive_dir is not None  # nothing to be beside
    return installed


def archive_dir(settings: Settings) -> Path:
    if settings.archive_dir:
        return Path(settings.archive_dir)
    db = Path(settings.db)
    return db.with_name(f"{db.stem}.archive")


def blob_store(settings: Settings) -> BlobStore:
    """Where the archive is (whether or not it is enabled: the CLI reads it either way)."""
    if settings.archive_bucket:
        from storage.blob_s3 import S3BlobStore

        return S3BlobStore(settings.archive_bucket, region=settings.region, endpoint_url=settings.archive_endpoint)
    if settings.store == "memory" and not settings.archive_dir:
        from bootstrap.memory import database

        return database(settings).blobs
    from storage.blob_local import LocalBlobStore

    return LocalBlobStore(archive_dir(settings))


def archive_handler(
    settings: Settings, blobs: BlobStore | None = None, definitions: EventStore | None = None
) -> ArchiveHandler | None:
    """The archive read model, or None when it is off; with ``definitions`` (the event
    store), the properties metrics and gauges name get typed columns too."""
    if not archive_enabled(settings):
        return None
    from projections.archive import parse_columns
    from services.archive import ArchiveHandler

    return ArchiveHandler(
        blobs or blob_store(settings),
        prefix=settings.archive_prefix,
        columns=parse_columns(settings.archive_columns),
        max_bytes=settings.archive_max_bytes,
        max_age_seconds=settings.archive_max_age_seconds,
        definitions=definitions,
    )
