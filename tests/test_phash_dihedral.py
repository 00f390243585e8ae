"""The eight pHash variants from one grid's two DCTs are, bit for bit, the hashes of the grid turned
and mirrored and transformed again (how they were computed before, and the definition)."""

from __future__ import annotations

import numpy as np
import scipy.fft
from PIL import Image, ImageDraw, ImageOps

from deeplens.modules import phash
from deeplens.modules.images import trim_borders
from deeplens.samples import TRANSFORMS, sample_photos, synthetic_image

# The definition: each variant turns the 32x32 grid itself (numpy), then takes the full 2-D DCT.
TURNS = {
    "identity": lambda a: a,
    "rot90": lambda a: np.rot90(a, 1),
    "rot180": lambda a: np.rot90(a, 2),
    "rot270": lambda a: np.rot90(a, 3),
    "flip_h": lambda a: a[:, ::-1],
    "flip_v": lambda a: a[::-1, :],
    "transpose": lambda a: a.T,
    "transverse": lambda a: np.rot90(a, 2).T,
}


def turned_grid_hashes(image: Image.Image) -> dict[str, str]:
    grid = phash.grayscale_grid(image)
    hashes = {}
    for name, turn in TURNS.items():
        low = scipy.fft.dct(scipy.fft.dct(turn(grid), axis=0, norm=None), axis=1, norm=None)[:8, :8]
        bits = (low > np.median(low)).flatten()
        hashes[name] = f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"
    return hashes


def plain_and_symmetric_images() -> list[Image.Image]:
    """Images whose DCT has exact zeros or ties: flat, mirror-symmetric, one-pixel, striped."""
    images = [Image.new("RGB", (64, 48), colour) for colour in ((0, 0, 0), (255, 255, 255), (117, 40, 200))]
    images.append(Image.new("RGB", (1, 1), (90, 90, 90)))
    ramp = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    images += [Image.fromarray(ramp).convert("RGB"), Image.fromarray(ramp.T.copy()).convert("RGB")]
    symmetric = Image.new("RGB", (200, 200), "white")
    draw = ImageDraw.Draw(symmetric)
    draw.ellipse((40, 40, 160, 160), fill="black")
    draw.rectangle((90, 10, 110, 190), fill=(200, 30, 30))
    images += [symmetric, ImageOps.mirror(symmetric.crop((0, 0, 200, 120)))]
    stripes = np.zeros((96, 96), dtype=np.uint8)
    stripes[::2] = 255
    images += [Image.fromarray(stripes).convert("RGB"), Image.fromarray(stripes.T.copy()).convert("RGB")]
    return images


def many_images() -> list[Image.Image]:
    """The sample photos (small: only the 32x32 grid matters), their edits, trimmed copies, synthetic photos."""
    photos = [photo.resize((128, 128 * photo.height // photo.width)) for photo in sample_photos().values()]
    edits = [transform(photo) for photo in photos for transform in TRANSFORMS.values()]
    synthetic = [synthetic_image(seed, (96, 72)) for seed in range(150)]
    return photos + edits + [trim_borders(image) for image in photos + edits] + synthetic + plain_and_symmetric_images()


def test_variants_equal_the_hashes_of_the_turned_grids():
    images = many_images()
    assert len(images) > 600
    for index, image in enumerate(images):
        assert phash.dihedral_hashes(image) == turned_grid_hashes(image), f"image {index} ({image.size})"


def test_the_plain_hash_is_the_identity_variant():
    for image in [*sample_photos().values(), *plain_and_symmetric_images()]:
        assert phash.bits_to_hex(phash.phash_bits(image)) == phash.dihedral_hashes(image)["identity"]
