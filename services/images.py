"""Images for IMAGE widgets: uploaded by editors, kept as blobs, served by an unguessable id.

Only raster formats a browser shows inertly (PNG, JPEG, GIF, WebP), recognised by their
first bytes rather than by what the client claims; SVG is refused (it can carry script).
An image is served to anyone who has its id (128 random bits): a dashboard's viewers learn it
from the widget, nobody else can guess it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from domain.access import Principal, require
from domain.blobs import BlobNotFound, BlobStore
from domain.datasets import DatasetTooLarge
from domain.errors import FieldError, NotFound, ValidationError

PREFIX = "images"
MAX_BYTES = 2 * 2**20
#: File signature → (extension, content type).
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png", "image/png"),
    (b"\xff\xd8\xff", "jpg", "image/jpeg"),
    (b"GIF87a", "gif", "image/gif"),
    (b"GIF89a", "gif", "image/gif"),
)
TYPES = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
IMAGE_ID = re.compile(r"[0-9a-f]{32}\.(png|jpg|gif|webp)")


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    content_type: str
    bytes: int

    @property
    def url(self) -> str:
        return f"/v1/images/{self.id}"


def sniff(data: bytes) -> tuple[str, str] | None:
    """(extension, content type) from the first bytes, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp", "image/webp"
    return next(((ext, kind) for magic, ext, kind in SIGNATURES if data.startswith(magic)), None)


class ImagesService:
    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def upload(self, principal: Principal, data: bytes) -> Image:
        require(principal, "editor")
        if len(data) > MAX_BYTES:
            raise DatasetTooLarge([FieldError("file", f"the image is {len(data)} bytes; at most {MAX_BYTES}")])
        found = sniff(data)
        if found is None:
            raise ValidationError([FieldError("file", "not a PNG, JPEG, GIF or WebP image (SVG is not accepted)")])
        ext, kind = found
        image = Image(f"{uuid.uuid4().hex}.{ext}", kind, len(data))
        self.blobs.put(f"{PREFIX}/{image.id}", data)
        return image

    def get(self, image_id: str) -> tuple[bytes, str]:
        """The image's bytes and content type; ``NotFound`` for an id that names none."""
        if not IMAGE_ID.fullmatch(image_id):
            raise NotFound(f"no image {image_id[:80]!r}")
        try:
            return self.blobs.get(f"{PREFIX}/{image_id}"), TYPES[image_id.rsplit(".", 1)[1]]
        except BlobNotFound:
            raise NotFound(f"no image {image_id!r}") from None
