"""The blob store in a local folder: one file per key.

``put`` writes a temp file beside the target (a name starting with ``.``, which ``list``
skips), fsyncs it and renames it over the target: readers see the old file or the new
one, and a crash leaves at most a stray temp file behind, never a torn object.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from domain.blobs import BlobNotFound, check_key


class LocalBlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(temp, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        # Walk only below the deepest folder the prefix names.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / folder if folder else self.root
        if not start.is_dir():
            return []
        keys = []
        for directory, _, files in os.walk(start):
            for name in files:
                if name.startswith("."):
                    continue  # a put in progress
                key = Path(directory, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
