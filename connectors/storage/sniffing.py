"""Telling images apart: by the extension of their name, and by their leading bytes."""

from __future__ import annotations

IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff", "heic", "heif", "avif"}
)
# How many leading bytes sniff_image_type needs to tell every supported format apart.
SNIFF_BYTES = 64


def extension(path: str) -> str:
    """The lower-case extension of the file name, "" for none (a leading dot starts no extension)."""
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name.lstrip(".") else ""


def sniff_image_type(first_bytes: bytes) -> str | None:
    """The image format its leading bytes announce ("jpeg", "png", "gif", "webp", "bmp", "tiff",
    "heic", "heif", "avif"), or None. Give it at least ``SNIFF_BYTES`` bytes where the file has them.
    """
    b = bytes(first_bytes[:SNIFF_BYTES])
    if b.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if b.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if b[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
        return "webp"
    if b[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if b[:2] == b"BM" and len(b) >= 18 and int.from_bytes(b[14:18], "little") in (12, 16, 40, 52, 56, 64, 108, 124):
        return "bmp"
    if b[4:8] == b"ftyp" and len(b) >= 12:
        box_end = min(len(b), max(16, int.from_bytes(b[0:4], "big")))
        brands = {b[8:12]} | {b[i: i + 4] for i in range(16, box_end - 3, 4)}
        if brands & {b"avif", b"avis"}:
            return "avif"
        if brands & {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"}:
            return "heic"
        if brands & {b"mif1", b"msf1"}:
            return "heif"
    return None
