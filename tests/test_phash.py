"""The hash itself: border trimming and rotation/mirror variants, on real photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from deeplens.modules import phash
from deeplens.modules.images import trim_borders
from deeplens.samples import TRANSFORMS, sample_photos


@pytest.fixture(scope="module")
def photos():
    return sample_photos()


@pytest.mark.parametrize("name", ["coffee", "rocket", "china", "gravel"])
def test_letterboxed_and_pillarboxed_copies_hash_like_the_original(photos, name):
    original = photos[name]
    letterbox = TRANSFORMS["border"](original)
    pillarbox = ImageOps.expand(original, border=(original.width // 8, 0), fill=(255, 255, 255))
    expected = phash.bits_to_hex(phash.phash_bits(trim_borders(original)))
    for copy in (letterbox, pillarbox):
        trimmed = trim_borders(copy)
        assert abs(trimmed.width - original.width) <= 2 and abs(trimmed.height - original.height) <= 2
        assert phash.hamming(phash.bits_to_hex(phash.phash_bits(trimmed)), expected) <= 4


def test_photos_without_bars_are_left_alone(photos):
    for name in ("coffee", "rocket", "china", "astronaut"):
        assert trim_borders(photos[name]).size == photos[name].size


def test_a_plain_image_is_not_trimmed_away():
    plain = Image.new("RGB", (300, 200), (40, 90, 160))
    assert trim_borders(plain).size[0] >= 300 * 0.3 and trim_borders(plain).size[1] >= 200 * 0.3


@pytest.mark.parametrize("turn", ["rot90", "rot180", "rot270", "mirror", "flip"])
def test_some_variant_of_the_original_matches_a_turned_copy(photos, turn):
    original, copy = photos["astronaut"], TRANSFORMS[turn](photos["astronaut"])
    copy_hash = phash.bits_to_hex(phash.phash_bits(copy))
    assert min(phash.hamming(copy_hash, v) for v in phash.dihedral_hashes(original).values()) <= 2
    assert phash.hamming(copy_hash, phash.dihedral_hashes(original)["identity"]) > 10  # the plain hash misses it


@pytest.mark.parametrize("hex_hash", ["0000000000000000", "ffffffffffffffff", "8000000000000001", "c2924c5532bddfc8"])
def test_hex_bits_and_vector_round_trip(hex_hash):
    most_significant_first = [int(b) for b in bin(int(hex_hash, 16))[2:].zfill(64)]
    bits = phash.hex_to_bits(hex_hash)
    assert bits.dtype == np.uint8 and bits.shape == (64,) and bits.tolist() == most_significant_first
    assert phash.bits_to_hex(bits) == hex_hash
    assert phash.hex_to_vector(hex_hash) == [float(b) for b in most_significant_first]


def test_bars_with_a_little_drawing_on_them_are_trimmed(photos):
    """A phone screenshot of a photo: black bars above and below with a clock, a battery and
    toolbar icons drawn on them. The bars go, the drawing does not stop the trim."""
    original = photos["coffee"].resize((400, 300))
    screen = Image.new("RGB", (400, 700), "black")
    screen.paste(original, (0, 200))
    draw = ImageDraw.Draw(screen)
    draw.text((20, 8), "17:58", fill="white")
    draw.rectangle((340, 10, 370, 18), outline="white", width=2)
    for x in (60, 150, 240, 330):
        draw.ellipse((x - 7, 680 - 7, x + 7, 680 + 7), outline="white", width=2)
    trimmed = trim_borders(screen)
    assert abs(trimmed.height - 300) <= 2 and trimmed.width == 400
    expected = phash.bits_to_hex(phash.phash_bits(trim_borders(original)))
    assert phash.hamming(phash.bits_to_hex(phash.phash_bits(trimmed)), expected) <= 4


def test_picture_lines_are_never_taken_for_drawing_on_a_bar(photos):
    """A bar, then a photo whose first rows are dark like the bar: the trim ends where the bar does."""
    original = photos["astronaut"].resize((300, 300))
    framed = ImageOps.expand(original, border=(0, 40, 0, 0), fill=(0, 0, 0))
    assert abs(trim_borders(framed).height - trim_borders(original).height) <= 2


def test_a_plain_backdrop_with_something_near_its_edge_is_not_a_bar(photos):
    """A photo with a plain band at the top and a small object in it near the edge (a bird in the
    sky, a lamp over a studio backdrop): no pad of uniform lines follows the object, so the trim
    stops at the object, as it always did."""
    picture = photos["rocket"].resize((300, 300))
    sky = Image.new("RGB", (300, 60), (120, 160, 220))
    ImageDraw.Draw(sky).ellipse((140, 5, 150, 12), fill=(30, 30, 30))
    scene = Image.new("RGB", (300, 360))
    scene.paste(sky, (0, 0))
    scene.paste(picture, (0, 60))
    assert trim_borders(scene).height >= 360 - 6


def test_bits_of_thresholds_at_numpy_median_exactly():
    """bits_of takes the median from one sort; it must split exactly where np.median does, ties and
    equal middle values included, or stored hashes would change."""
    rng = np.random.default_rng(7)
    lows = [rng.normal(0, 100, (8, 8)) for _ in range(300)]
    lows += [np.round(rng.normal(0, 3, (8, 8))) for _ in range(300)]  # many ties
    lows += [np.zeros((8, 8)), np.arange(64, dtype=float).reshape(8, 8)]
    for low in lows:
        assert phash.bits_of(low).tolist() == (low > np.median(low)).flatten().astype(np.uint8).tolist()


def test_hex_to_bits_refuses_a_hash_of_another_length():
    with pytest.raises(ValueError, match="16 hex digits"):
        phash.hex_to_bits("abc")
