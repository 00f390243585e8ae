"""content_box takes the statistics of many lines of an edge in one numpy call each. The boxes it
finds, and so every hash, embedding and has_border computed from them, are bit for bit those of the
per-line code it replaced (kept below as the reference) on the sample photos and their edits, at
full size and as the scan's thumbnails, on synthetic photos in noisy bars whose standard deviation
straddles the 6-level threshold, with and without drawing on them, and on odd sizes and modes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from deeplens.connectors.extract import THUMBNAIL_QUALITY, THUMBNAIL_SIZE
from deeplens.modules.images import (
    BORDER_MAX_SHARE, BORDER_MAX_STD, CHROME_CONTRAST, CHROME_PAD, CHROME_SHARE, CHROME_ZONE, content_box,
    line_statistics, open_image,
)
from deeplens.samples import TRANSFORMS, jpeg_bytes, sample_photos, synthetic_image


def per_line_content_box(image: Image.Image) -> tuple[int, int, int, int]:
    """content_box as it was before (2026-12-02), one line at a time: the reference."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    height, width = gray.shape
    if height < 8 or width < 8:
        return 0, 0, width, height

    def bar(lines: np.ndarray, limit: int) -> int:
        edge_value = float(np.median(lines[0]))
        before_drawing = end = 0
        drawing = None
        for count, line in enumerate(lines[:limit], start=1):
            if line.std() <= BORDER_MAX_STD and abs(float(line.mean()) - edge_value) <= BORDER_MAX_STD:
                end = count
                if drawing is None:
                    before_drawing = count
                continue
            if count > CHROME_ZONE * len(lines) or np.mean(np.abs(line - edge_value) > CHROME_CONTRAST) > CHROME_SHARE:
                break
            drawing = count
        if drawing is not None and end - drawing < CHROME_PAD * len(lines):
            return before_drawing
        return end

    top = bar(gray, int(height * BORDER_MAX_SHARE))
    bottom = bar(gray[::-1], int(height * BORDER_MAX_SHARE))
    left = bar(gray.T, int(width * BORDER_MAX_SHARE))
    right = bar(gray.T[::-1], int(width * BORDER_MAX_SHARE))
    return left, top, width - right, height - bottom


def scan_thumbnail(image: Image.Image) -> Image.Image:
    """The thumbnail connectors/extract.py trims for has_border."""
    thumb = open_image(jpeg_bytes(image), draft_to=THUMBNAIL_SIZE, fit=True).image
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    return thumb


def framed(rng: np.random.Generator, index: int) -> Image.Image:
    """A synthetic photo in bars of one colour plus noise (sigma 3-9: lines on both sides of the
    threshold), bars from none to past BORDER_MAX_SHARE, some with a clock and icons on them."""
    width, height = (int(v) for v in rng.integers(12, 300, 2))
    bars = [int(rng.integers(0, max(1, side // 2))) if rng.random() < 0.8 else 0 for side in (height, height, width, width)]
    top, bottom, left, right = bars
    canvas = np.empty((height + top + bottom, width + left + right, 3), np.float32)
    canvas[:] = rng.integers(0, 256, 3)
    canvas += rng.normal(0, rng.uniform(3, 9), canvas.shape)
    canvas[top:top + height, left:left + width] = np.asarray(synthetic_image(index, (width, height)), np.float32)
    image = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
    if index % 3 == 0:
        draw = ImageDraw.Draw(image)
        w, h = image.size
        draw.rectangle((w // 20, 1, w // 5, max(2, h // 40)), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw.ellipse((w - w // 8, 1, w - w // 16, max(2, h // 30)), fill=(250, 250, 250))
    return image


def odd_images() -> list[Image.Image]:
    images = [Image.new("RGB", size, (40, 90, 160)) for size in ((1, 1), (7, 300), (300, 7), (8, 8), (9, 13), (300, 200))]
    ramp = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    images += [Image.fromarray(ramp), Image.fromarray(ramp.T.copy())]
    letterboxed = Image.new("RGBA", (120, 90), (0, 0, 0, 0))
    letterboxed.paste(synthetic_image(3, (120, 60)), (0, 15))
    return images + [letterboxed, synthetic_image(5, (201, 133)).convert("L")]


def test_boxes_equal_the_per_line_code():
    rng = np.random.default_rng(16)
    photos = [photo.resize((320, 320 * photo.height // photo.width)) for photo in sample_photos().values()]
    edits = [transform(photo) for photo in photos for transform in TRANSFORMS.values()]
    frames = [framed(rng, index) for index in range(100)]
    images = photos + edits + frames + odd_images()
    thumbnails = [scan_thumbnail(image) for image in photos + edits[::3] + frames[:40]]
    module_views = [Image.open(io.BytesIO(jpeg_bytes(thumb, THUMBNAIL_QUALITY))).convert("RGB") for thumb in thumbnails[::4]]
    checked = images + thumbnails + module_views
    trimmed = 0
    for index, image in enumerate(checked):
        expected = per_line_content_box(image)
        assert content_box(image) == expected, f"image {index} ({image.size}, {image.mode})"
        trimmed += expected != (0, 0, *image.size)
    assert len(checked) > 500 and trimmed > 200  # many of them with bars, not only plain photos


def test_line_statistics_are_numpys_per_line_mean_and_std():
    rng = np.random.default_rng(6)
    for length in (8, 9, 15, 16, 17, 127, 128, 129, 255, 256, 257, 1000, 4097, 9000):
        levels = rng.integers(0, 256, (24, length)).astype(np.float32)
        near_flat = np.rint(rng.normal(100, rng.uniform(4, 8), (24, length))).astype(np.float32)
        fractions = rng.uniform(0, 255, (24, length)).astype(np.float32)
        for lines in (levels, near_flat, fractions, np.ascontiguousarray(levels[:, :length // 2 + 4].T)):
            means, deviations = line_statistics(lines)
            assert means.tolist() == [[line.mean()] for line in lines]
            assert deviations.tolist() == [[line.std()] for line in lines]
