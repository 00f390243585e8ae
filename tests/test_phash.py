"""The hash itself: border trimming and rotation/mirror variants, on real photos."""

from __future__ import annotations

import pytest
from PIL import Image, ImageOps

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


def test_hex_and_bits_round_trip():
    bits = phash.hex_to_bits("c2924c5532bddfc8")
    assert phash.bits_to_hex(bits) == "c2924c5532bddfc8" and bits[0] == 1 and bits[2] == 0
