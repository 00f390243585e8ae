"""What a scan reads out of an image file: the thumbnail (decoded at a reduced JPEG scale), facts, errors."""

from __future__ import annotations

import base64
import io

import imagehash
import pytest
from PIL import Image

from deeplens.connectors.extract import THUMBNAIL_SIZE, extract
from deeplens.modules.images import BadImage
from deeplens.samples import jpeg_bytes, sample_photos, synthetic_image


def thumbnail_of(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(extract(data).thumbnail)))


@pytest.mark.parametrize(
    "size, expected",
    [((1024, 768), (256, 192)), ((768, 1024), (192, 256)), ((1021, 767), (256, 192)),
     ((4032, 3024), (256, 192)), ((300, 200), (256, 171)), ((120, 80), (120, 80))],
)
def test_thumbnail_fits_the_box_whatever_scale_the_decoder_picks(size, expected):
    data = jpeg_bytes(synthetic_image(3, size))
    facts = extract(data)
    assert (facts.width, facts.height) == size
    assert thumbnail_of(data).size == expected
    assert max(expected) <= THUMBNAIL_SIZE


def test_reduced_scale_decoding_keeps_the_picture():
    # The thumbnail comes from the JPEG decoder's 1/4 scale; its pHash stays that of the full image.
    for name, photo in sample_photos().items():
        full = photo.convert("RGB").resize((1024, 768))
        thumb = thumbnail_of(jpeg_bytes(full))
        assert imagehash.phash(thumb) - imagehash.phash(full) <= 4, name


def test_exif_orientation_is_applied_to_the_thumbnail_and_the_size():
    image = synthetic_image(5, (800, 600))
    exif = Image.Exif()
    exif[0x0112] = 6  # turned 90 degrees clockwise for display
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    facts = extract(out.getvalue())
    assert (facts.width, facts.height) == (600, 800)
    assert thumbnail_of(out.getvalue()).size == (192, 256)


def test_not_an_image_is_a_bad_image():
    with pytest.raises(BadImage, match="not an image"):
        extract(b"plain text")
