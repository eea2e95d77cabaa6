"""The blob-store port: objects by key (the archive's Parquet files and its state), and
its in-memory fake.

Keys are ``/``-separated paths without a leading ``/``. Adapters: a local folder
(``storage.blob_local``), S3 (``storage.blob_s3``) and ``MemoryBlobStore`` below; one
contract suite (tests/contract/test_blob_stores.py) holds the three to the same rules:

- ``put`` replaces the object whole: a reader sees the old bytes or the new ones, never
  a part (local: temp file + rename; S3: one PUT);
- ``get`` of a missing key raises ``BlobNotFound``;
- ``list(prefix)`` returns every key starting with ``prefix``, sorted;
- ``delete`` of a missing key is not an error.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from domain.errors import PulseError


class BlobNotFound(PulseError, KeyError):
    """No object under this key."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no blob {key!r}")

    def __str__(self) -> str:
        return f"no blob {self.key!r}"


class BlobStoreError(PulseError):
    """The blob store failed (after the adapter's own retries)."""


@runtime_checkable
class BlobStore(Protocol):
    #: Where the objects are, for messages and for readers that open files in place
    #: (a local folder's path; ``s3://bucket``; ``memory:``).
    location: str

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing any object there, all at once."""

    def get(self, key: str) -> bytes:
        """The object's bytes; ``BlobNotFound`` when there is none."""

    def list(self, prefix: str = "") -> list[str]:
        """Every key starting with ``prefix``, sorted."""

    def delete(self, key: str) -> None:
        """Remove the object (nothing when there is none)."""


def check_key(key: str) -> str:
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"bad blob key {key!r}")
    return key


class MemoryBlobStore:
    """The fake: a dict in this process."""

    location = "memory:"

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._objects[check_key(key)] = bytes(data)

    def get(self, key: str) -> bytes:
        with self._lock:
            try:
                return self._objects[key]
            except KeyError:
                raise BlobNotFound(key) from None

    def list(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(key for key in self._objects if key.startswith(prefix))

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)
