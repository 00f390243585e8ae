"""64-bit DCT perceptual hash (the pHash of imagehash/imagededup) and its dihedral variants.

Bit order: bit i is row i // 8, column i % 8 of the 8x8 low-frequency DCT block (row-major);
the hex form is those 64 bits most-significant first, so vector[0] is the top bit of hex[0].
That makes the hex identical to `str(imagehash.phash(image))`. The module server hashes the image
after trimming uniform borders (images.trim_borders), so letterboxed copies hash like their original.

Dihedral variants: the hash of the image turned by 90/180/270 degrees and mirrored. Stored
documents keep only the identity hash; a search asks for all eight, so a rotated or flipped copy
is found without storing eight vectors per image. (PDQ was considered and left out: its 256 bits
buy little over pHash for recompression/resize copies, and a 64-bit Hamming vector keeps
Weaviate and Elasticsearch searches cheap.)
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from PIL import Image

HASH_SIZE = 8
HIGHFREQ_FACTOR = 4
BITS = HASH_SIZE * HASH_SIZE
# The eight symmetries of the square, applied to the small grayscale array before the DCT.
DIHEDRAL = {
    "identity": lambda a: a,
    "rot90": lambda a: np.rot90(a, 1),
    "rot180": lambda a: np.rot90(a, 2),
    "rot270": lambda a: np.rot90(a, 3),
    "flip_h": lambda a: a[:, ::-1],
    "flip_v": lambda a: a[::-1, :],
    "transpose": lambda a: a.T,
    "transverse": lambda a: np.rot90(a, 2).T,
}


def grayscale_grid(image: Image.Image) -> np.ndarray:
    size = HASH_SIZE * HIGHFREQ_FACTOR
    return np.asarray(image.convert("L").resize((size, size), Image.Resampling.LANCZOS), dtype=np.float64)


def hash_bits(grid: np.ndarray) -> np.ndarray:
    # Same transform as imagehash.phash: type-II DCT along rows then columns, keep the 8x8 corner.
    dct = scipy.fft.dct(scipy.fft.dct(grid, axis=0, norm=None), axis=1, norm=None)
    low = dct[:HASH_SIZE, :HASH_SIZE]
    return (low > np.median(low)).flatten().astype(np.uint8)


def bits_to_hex(bits: np.ndarray) -> str:
    return f"{int(''.join('1' if b else '0' for b in bits), 2):0{BITS // 4}x}"


def hex_to_bits(hex_hash: str) -> np.ndarray:
    value = int(hex_hash, 16)
    return np.array([(value >> (BITS - 1 - i)) & 1 for i in range(BITS)], dtype=np.uint8)


def hex_to_vector(hex_hash: str) -> list[float]:
    """The 64-d 0/1 vector of Weaviate's `phash` named vector (Hamming distance = differing bits)."""
    return hex_to_bits(hex_hash).astype(float).tolist()


def phash_bits(image: Image.Image) -> np.ndarray:
    return hash_bits(grayscale_grid(image))


def dihedral_hashes(image: Image.Image) -> dict[str, str]:
    grid = grayscale_grid(image)
    return {name: bits_to_hex(hash_bits(turn(grid))) for name, turn in DIHEDRAL.items()}


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()
