"""What a scan reads out of one file's bytes: hash, EXIF facts, size, and the thumbnail that
Weaviate's modules vectorize. The bytes are read once; decoding is the module server's hostile-input code.
`read_exif` is the one EXIF reader (the cleanup plan ranks copies by it too)."""

from __future__ import annotations

import base64
import hashlib
import io
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone

from PIL import Image

from deeplens.modules.images import DEFAULT_MAX_PIXELS, EXIF_ORIENTATION, content_box, open_image

THUMBNAIL_SIZE = 256
THUMBNAIL_QUALITY = 90
BORDER_MIN_SHARE = 0.02  # of the area; thinner uniform edges are part of many plain photos
EXIF_IFD = 0x8769
EXIF_DATETIME_ORIGINAL = 0x9003
EXIF_DATETIME = 0x0132
EXIF_MAKE = 0x010F
EXIF_MODEL = 0x0110


@dataclass(frozen=True)
class ImageFacts:
    content_sha256: str
    width: int
    height: int
    format: str | None
    taken_at: datetime | None
    camera: str | None
    thumbnail: str  # base64 JPEG, <= 256 px, EXIF-transposed
    has_border: bool  # a uniform margin (letterbox, frame) around the picture: a sign of an edited copy


def extract(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageFacts:
    """Raises modules.images.BadImage for anything that is not a usable image."""
    decoded = open_image(data, max_pixels, draft_to=THUMBNAIL_SIZE, fit=True)
    exif = read_exif(data)
    thumb = decoded.image
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=THUMBNAIL_QUALITY)
    return ImageFacts(
        content_sha256=hashlib.sha256(data).hexdigest(),
        width=decoded.width,
        height=decoded.height,
        format=decoded.format,
        taken_at=exif.taken_at,
        camera=exif.camera,
        thumbnail=base64.b64encode(out.getvalue()).decode(),
        has_border=_has_border(thumb),
    )


def _has_border(thumb: Image.Image) -> bool:
    # The trim the module server hashes after (so that framed copies match), here of the thumbnail
    # before its JPEG encoding: the module server's box, of the decoded JPEG, can differ by a line.
    left, top, right, bottom = content_box(thumb)
    return (right - left) * (bottom - top) < (1 - BORDER_MIN_SHARE) * thumb.width * thumb.height


@dataclass(frozen=True)
class Exif:
    taken_at: datetime | None = None
    camera: str | None = None
    fields: int | None = None  # tags in IFD0 and the Exif IFD; None when the block cannot be read
    orientation: int | None = None  # the Orientation tag (1-8) when the file carries a valid one


def read_exif(data: bytes) -> Exif:
    """The EXIF facts of an image's bytes; an unreadable block gives Exif() (all unknown)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exif = Image.open(io.BytesIO(data)).getexif()
            sub_ifd = exif.get_ifd(EXIF_IFD)
    except Exception:  # noqa: BLE001 - EXIF is a bonus: a broken block must not cost the image
        return Exif()
    stamp = sub_ifd.get(EXIF_DATETIME_ORIGINAL) or exif.get(EXIF_DATETIME)
    taken_at = None
    if isinstance(stamp, str):
        try:
            # EXIF carries no time zone; store it as UTC so dates sort and compare.
            taken_at = datetime.strptime(stamp.strip("\0 "), "%Y:%m:%d %H:%M:%S").replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    parts = [str(exif.get(tag, "")).strip("\0 ") for tag in (EXIF_MAKE, EXIF_MODEL)]
    orientation = exif.get(EXIF_ORIENTATION)
    return Exif(
        taken_at=taken_at,
        camera=" ".join(part for part in parts if part) or None,
        fields=len(exif) + len(sub_ifd),
        orientation=orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None,
    )
