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
from PIL import Image

from deeplens.modules.images import row_medians

HASH_SIZE = 8
HIGHFREQ_FACTOR = 4
BITS = HASH_SIZE * HASH_SIZE
# The eight symmetries of the square, in the order the variants are stored, each as what it does to
# the grayscale grid: (transpose it, then reverse its rows, reverse its columns). rot90 is
# np.rot90(grid) = grid.T[::-1], rot270 is grid.T[:, ::-1], transverse is np.rot90(grid, 2).T.
DIHEDRAL = {
    "identity": (False, False, False),
    "rot90": (True, True, False),
    "rot180": (False, True, True),
    "rot270": (True, False, True),
    "flip_h": (False, False, True),
    "flip_v": (False, True, False),
    "transpose": (True, False, False),
    "transverse": (True, True, True),
}
# Reversing a sequence flips the sign of its odd DCT-II coefficients (the DCT of x[::-1] is
# (-1)^k X_k). So the four variants that keep the grid's axes come from the grid's DCT and the four
# that transpose it from the DCT of grid.T: two transforms instead of eight, giving bit for bit the
# hashes of the turned grids (tests/test_phash_dihedral.py checks that on 600 images).
_ODD = np.array([(-1.0) ** k for k in range(HASH_SIZE)])


def grayscale_grid(image: Image.Image) -> np.ndarray:
    size = HASH_SIZE * HIGHFREQ_FACTOR
    return np.asarray(image.convert("L").resize((size, size), Image.Resampling.LANCZOS), dtype=np.float64)


def low_frequencies(grid: np.ndarray) -> np.ndarray:
    """The 8x8 low-frequency corner of the grid's type-II DCT along rows then columns (the transform
    of imagehash.phash); the second pass runs on the 8 rows the corner needs."""
    # Imported here: every CLI command imports this module (hex_to_vector) and scipy.fft costs ~0.7 s.
    import scipy.fft

    rows = scipy.fft.dct(grid, axis=0, norm=None)[:HASH_SIZE]
    return scipy.fft.dct(rows, axis=1, norm=None)[:, :HASH_SIZE]


def bits_of(low: np.ndarray) -> np.ndarray:
    """Each coefficient above the median of the 64 (np.median's value, from one sort: its generic
    path cost ~5x as much, and a scan hashes each image eight times, the dihedral variants)."""
    return (low > row_medians(low.reshape(1, -1))[0]).flatten().astype(np.uint8)


def hash_bits(grid: np.ndarray) -> np.ndarray:
    return bits_of(low_frequencies(grid))


def bits_to_hex(bits: np.ndarray) -> str:
    return np.packbits(np.asarray(bits, dtype=bool)).tobytes().hex()


def hex_to_bits(hex_hash: str) -> np.ndarray:
    if len(hex_hash) != BITS // 4:
        raise ValueError(f"a pHash is {BITS // 4} hex digits, got {hex_hash!r}")
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_hash), dtype=np.uint8))


def hex_to_vector(hex_hash: str) -> list[float]:
    """The 64-d 0/1 vector of Weaviate's `phash` named vector (Hamming distance = differing bits)."""
    return hex_to_bits(hex_hash).astype(float).tolist()


def phash_bits(image: Image.Image) -> np.ndarray:
    return hash_bits(grayscale_grid(image))


def dihedral_hashes(image: Image.Image) -> dict[str, str]:
    grid = grayscale_grid(image)
    corners = {False: low_frequencies(grid), True: low_frequencies(grid.T)}
    hashes = {}
    for name, (transposed, reverse_rows, reverse_columns) in DIHEDRAL.items():
        low = corners[transposed]
        if reverse_rows:
            low = low * _ODD[:, np.newaxis]
        if reverse_columns:
            low = low * _ODD
        hashes[name] = bits_to_hex(bits_of(low))
    return hashes


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()
