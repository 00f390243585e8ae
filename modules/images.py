"""Decoding untrusted image bytes. Every failure is a BadImage with a message a user can act on."""

from __future__ import annotations

import base64
import binascii
import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

# Refuse anything above this many pixels before decoding it (decompression bombs).
DEFAULT_MAX_PIXELS = 64_000_000
EXIF_ORIENTATION = 0x0112
# Formats photos are stored in. An allowlist, because Pillow also opens formats whose decoders
# are rarely exercised or shell out (EPS runs Ghostscript on the input).
SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "TIFF", "BMP", "JPEG2000", "ICO", "PPM", "TGA", "PSD")


class BadImage(ValueError):
    """The input is not a usable image; the message names the problem."""


def decode_base64(text: str) -> bytes:
    if not isinstance(text, str):
        raise BadImage("image must be a base64 string")
    if text.startswith("data:"):  # data URLs are common from browsers and Kibana
        text = text.partition(",")[2]
    # Line-wrapped base64 (the `base64` command, Python's encodebytes) is what scripts calling the
    # features and ES APIs often send; whitespace is dropped, anything else outside the alphabet is an error.
    text = "".join(text.split())
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadImage(f"image is not valid base64: {exc}") from None
    if not data:
        raise BadImage("image is empty (zero bytes)")
    return data


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF-transposed, possibly reduced by draft mode
    format: str | None  # as Pillow names it: JPEG, PNG, GIF, WEBP, ...
    width: int  # of the full-size image as displayed (after EXIF orientation)
    height: int


def open_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, draft_to: int | None = None, fit: bool = False
) -> DecodedImage:
    """Decode the first frame into an EXIF-transposed RGB image.

    draft_to: the smallest side the caller needs (with fit: the longest side, for a thumbnail that
    fits into draft_to x draft_to); lets JPEG decode at 1/2, 1/4 or 1/8 scale. The decoder's DCT
    scaling is far cheaper than decoding larger and resizing (a 1024x768 photo to 256 px: ~0.5 ms
    at 1/4 against ~4 ms at 1/2 plus a Lanczos resize).
    """
    if not data:
        raise BadImage("image is empty (zero bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # we check the size ourselves; corrupt metadata only warns
            image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
            width, height = image.size
            if width <= 0 or height <= 0:
                raise BadImage(f"image has no pixels ({width}x{height})")
            if width * height > max_pixels:
                raise BadImage(
                    f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                    f"{max_pixels:,} (decompression-bomb guard); resize it or raise --max-pixels"
                )
            image_format = image.format
            if draft_to and image_format == "JPEG":
                # Pillow keeps both sides >= the requested box; for fit, a box of the image's shape.
                box = (draft_to, draft_to)
                if fit:
                    longest = max(width, height)
                    box = (max(1, width * draft_to // longest), max(1, height * draft_to // longest))
                image.draft("RGB", box)
            image.load()  # first frame of animated images
            orientation = _orientation(image)
            rgb = to_rgb(image)
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage(f"data is not an image in a supported format ({', '.join(SUPPORTED_FORMATS)})") from None
    except Image.DecompressionBombError as exc:
        raise BadImage(f"image is too large to decode safely (decompression-bomb guard, see --max-pixels): {exc}") from None
    except Exception as exc:  # noqa: BLE001 - decoders of hostile bytes fail in many ways (OSError, struct.error, ...)
        raise BadImage(f"image is corrupt or truncated: {type(exc).__name__}: {exc}") from None
    if orientation in (5, 6, 7, 8):  # turned by 90 or 270 degrees
        width, height = height, width
    return DecodedImage(_transpose(rgb, orientation), image_format, width, height)


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - broken EXIF must not lose an otherwise fine image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _transpose(image: Image.Image, orientation: int) -> Image.Image:
    # The same table as ImageOps.exif_transpose, applied to the already converted RGB image.
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for every mode: alpha composited on white, 16-bit and float scaled to 8 bits, CMYK converted."""
    if image.mode.startswith("I;16"):
        # 16-bit samples: the same picture as its 8-bit version (not contrast-stretched), so both
        # get the same vectors.
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
    if image.mode in ("I", "F"):  # 32-bit int or float: the range is unknown, so stretch it
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
        image = Image.fromarray(scaled.astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image if image.mode == "RGB" else image.convert("RGB")


# Letterbox/pillarbox bars: edge rows or columns whose pixels barely vary. Trimmed before hashing
# and embedding, so a copy with added borders looks like its original. Never more than this share
# of a side, so a photo with a plain sky keeps most of it.
BORDER_MAX_STD = 6.0
BORDER_MAX_SHARE = 0.35
# A bar may carry a little drawing at the frame's edge: a phone screenshot's clock and battery, its
# toolbar icons. A line within CHROME_ZONE of the edge where at most CHROME_SHARE of the pixels
# stand out from the bar's colour (by more than CHROME_CONTRAST grey levels) is crossed, and the bar
# ends at its last uniform line, but only when at least CHROME_PAD of the side of uniform lines
# follows the drawing (a real pad, not a plain sky or a studio backdrop with something in it);
# otherwise the bar ends at the drawing. A line of picture differs from the bar almost everywhere.
# Chosen on the tune split of bench/neardup2 (its gallery screenshots), checked there to change
# the trim of 3 of its 1,142 other images.
CHROME_ZONE = 0.06
CHROME_SHARE = 0.3
CHROME_CONTRAST = 24
CHROME_PAD = 0.15


def trim_borders(image: Image.Image) -> Image.Image:
    box = content_box(image)
    return image if box == (0, 0, *image.size) else image.crop(box)


def content_box(image: Image.Image) -> tuple[int, int, int, int]:
    """The picture inside its uniform bars (see BORDER_MAX_STD): (left, top, right, bottom) in pixels."""
    gray = np.asarray(image.convert("L"))
    height, width = gray.shape
    if height < 8 or width < 8:
        return 0, 0, width, height
    top, bottom = _bars(gray, int(height * BORDER_MAX_SHARE))
    left, right = _bars(gray.T, int(width * BORDER_MAX_SHARE))
    return left, top, width - right, height - bottom


def _bars(lines: np.ndarray, limit: int) -> tuple[int, int]:
    """How many lines (rows, or columns: `lines` is gray.T) the bars at the first and at the last
    edge span, each counted from its edge inwards.

    A bar is followed line by line (_bar), but the statistics of the lines it usually needs, the
    chrome zone and one line more at both edges, come from one numpy call each: numpy calls per
    line took 0.3 CPU ms per 256 px thumbnail (1.0 for photos with smooth edges), and the scan and
    the module server both trim each thumbnail (bench/RESULTS.md, issue 16's fourth pass)."""
    zone = math.floor(CHROME_ZONE * len(lines))  # lines 1..zone may carry drawing (count <= CHROME_ZONE * len)
    first = min(limit, zone + 1)
    ends = (lines, lines[::-1])
    block = np.concatenate([end[:first] for end in ends], dtype=np.float32)
    edge_values = row_medians(block[[0, first]])
    per_line = np.repeat(edge_values, first)[:, np.newaxis]
    uniform = _uniform_lines(block, per_line)
    stand_out = (np.count_nonzero(np.abs(block - per_line) > CHROME_CONTRAST, axis=1) / block.shape[1]).tolist()
    first_bar, last_bar = (
        _bar(end, limit, zone, edge_values[index:index + 1, np.newaxis], uniform[index * first:(index + 1) * first],
             stand_out[index * first:(index + 1) * first])
        for index, end in enumerate(ends)
    )
    return first_bar, last_bar


def _bar(lines: np.ndarray, limit: int, zone: int, edge_value: np.ndarray, uniform: list[bool],
         stand_out: list[float]) -> int:
    """How many lines, from the edge inwards, the bar at this edge spans. `uniform` and `stand_out`
    (the share of pixels off the bar's colour) cover its first lines; a wider bar gets the rest."""
    before_drawing = end = 0
    drawing = None  # the last line crossed that has drawing on it
    for count in range(1, limit + 1):
        if count > len(uniform):
            # Rows of their own (C order): a row's sums then run as they do for one line.
            uniform += _uniform_lines(np.ascontiguousarray(lines[len(uniform):limit], dtype=np.float32), edge_value)
        if uniform[count - 1]:
            end = count
            if drawing is None:
                before_drawing = count
            continue
        if count > zone or stand_out[count - 1] > CHROME_SHARE:
            break
        drawing = count
    if drawing is not None and end - drawing < CHROME_PAD * len(lines):
        return before_drawing
    return end


def _uniform_lines(lines: np.ndarray, edge_values: np.ndarray) -> list[bool]:
    """Per line (float32 rows; edge_values: the bar's colour, one row or one per line): its
    standard deviation and its mean's distance from the bar's colour both within BORDER_MAX_STD."""
    means, deviations = line_statistics(lines)
    off_colour = np.abs(means.astype(np.float64) - edge_values.astype(np.float64))
    return ((deviations <= BORDER_MAX_STD) & (off_colour <= BORDER_MAX_STD))[:, 0].tolist()


def line_statistics(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard deviation) of each row, as (n, 1) float32 arrays: numpy's own ndarray.mean
    and .std computation (numpy/_core/_methods.py `_var`: the float32 sum, divided by the count,
    the squared deviations summed along each row) for all rows at once, without its per-call
    overhead, so each row gets bit for bit what row.mean() and row.std() give
    (tests/test_trim_borders.py checks that, and the boxes against the per-line code)."""
    count = np.intp(lines.shape[1])
    means = np.add.reduce(lines, axis=1, keepdims=True)
    np.true_divide(means, count, out=means, casting="unsafe")
    squares = lines - means
    np.multiply(squares, squares, out=squares)
    variances = np.add.reduce(squares, axis=1, keepdims=True)
    np.true_divide(variances, count, out=variances, casting="unsafe")
    return means, np.sqrt(variances, out=variances)


def row_medians(lines: np.ndarray) -> np.ndarray:
    """np.median of each row, bit for bit: the middle value, or the mean of the two middle ones
    ((a + b) / 2, as np.median takes it; for the trim's float32 grey levels the sum is a whole
    number below 2**24, so exact). One sort: np.median(axis=1) took 13.8 us for two 256-value rows
    against 3.1 here; the trim runs it twice per image and the pHash eight times (phash.bits_of)."""
    ordered = np.sort(lines, axis=1)
    middle = lines.shape[1] // 2
    if lines.shape[1] % 2:
        return ordered[:, middle]
    return (ordered[:, middle - 1] + ordered[:, middle]) / np.float32(2)
