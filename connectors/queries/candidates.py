"""Candidates found in memory, over the export of the whole collection: no query per image.

pHash matches (phash_pairs, nearest_phash_matches, turned_pairs):

Multi-index hashing: split the 64 bits into bands; by the pigeonhole principle two hashes within
`max_distance` bits have at least one band within `max_distance // bands` bits of each other. Each
band's values are counting-sorted into a table once; each hash then looks up its own band value
with every pattern of at most that many bits flipped, and only those candidates get their full
distance computed. Exact (every pair within `max_distance`, no other), unlike an HNSW query, and
vectorised with numpy: no Python loop per hash or per candidate pair, so it runs at a million hashes.

Semantic neighbours (semantic_neighbours): an inverted-file search over the exported embeddings.
A per-image query to the database costs ~4 ms of its CPU (bench/RESULTS.md, "duplicates --near at
scale"), too much for 100k images on 2 cores; here the embeddings are split into cells around
k-means centres, each image is compared with the images of its PROBES nearest cells, and those
comparisons are matrix products (BLAS), cell by cell. Approximate like the HNSW query it replaces:
a neighbour whose cell is not among an image's nearest is missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import combinations

import numpy as np

from deeplens.modules.phash import BITS

PROBES = 8  # cells searched per image, its own first
KMEANS_ROUNDS = 4  # refinements of the cell centres, on a sample
KMEANS_SAMPLE = 64  # images per cell in that sample
BLOCK = 4096  # images whose nearest cells are found at once
MOST_FLIPS = 2  # bits flipped per band lookup: 3 bands of 21-22 bits for max_distance 8
TURNED_BANDS = 4  # 16-bit bands: a turned copy within 3 bits of its original's variant shares one for sure
CHUNK = 2048  # hashes looked up at once: bounds the memory of one step (a few MB)
CELL_BLOCK = 1 << 22  # similarities computed at once in a cell (16 MB): a cell may hold thousands of one picture


def hash_array(phashes: list[str]) -> np.ndarray:
    """64-bit pHashes (hex, as the index stores them) as unsigned integers."""
    return np.array([int(phash, 16) for phash in phashes], dtype=np.uint64)


def bands(count: int) -> list[tuple[int, int]]:
    """(shift, width) of `count` bands that cover the 64 bits, widths as equal as possible."""
    widths = [BITS // count + (band < BITS % count) for band in range(count)]
    return [(sum(widths[:band]), width) for band, width in enumerate(widths)]


def _band(values: np.ndarray, shift: int, width: int) -> np.ndarray:
    return ((values >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int32)


def _flip_patterns(width: int, flips: int) -> np.ndarray:
    """Every value of `width` bits with at most `flips` bits set, zero first."""
    return np.array([sum(1 << bit for bit in bits) for count in range(flips + 1)
                     for bits in combinations(range(width), count)], dtype=np.int32)


def _runs(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of `keys` (integers below `size`) grouped by key, and where each key's run lies in
    them: the indices with key k are order[bounds[k]:bounds[k + 1]]."""
    order = np.argsort(keys, kind="stable")
    bounds = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=size), out=bounds[1:])
    return order, bounds


def _band_matches(queries: np.ndarray, table: np.ndarray, layout: list[tuple[int, int]], flips: int,
                  keep: Callable[[np.ndarray, np.ndarray], np.ndarray],
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(query index, table index, bits that differ) of every pair with a band within `flips` bits
    that `keep(query index, table index)` keeps, each pair once: from the first such band."""
    for number, (shift, width) in enumerate(layout):
        order, bounds = _runs(_band(table, shift, width), 1 << width)
        occupied = bounds[1:] > bounds[:-1]  # most keys find nothing: this small table answers them from the cache
        patterns = _flip_patterns(width, flips)
        for start in range(0, len(queries), CHUNK):
            keys = (_band(queries[start:start + CHUNK], shift, width)[:, None] ^ patterns[None, :]).ravel()
            hit = np.flatnonzero(occupied[keys])
            key = keys[hit]
            # each hit key's run of table entries in `order`, one after the other
            span, position = _spans(bounds[key], bounds[key + 1] - bounds[key])
            query, other = start + hit[span] // len(patterns), order[position]
            kept = keep(query, other)  # before the gathers below (phash_pairs drops half the pairs here)
            query, other = query[kept], other[kept]
            differ = queries[query] ^ table[other]
            earlier = np.zeros(len(query), dtype=bool)
            for shift_before, width_before in layout[:number]:
                earlier |= np.bitwise_count(_band(differ, shift_before, width_before)) <= flips
            yield query[~earlier], other[~earlier], differ[~earlier]


def _within(matches: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]],
            max_distance: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(query index, table index, distance) of the band matches within max_distance bits."""
    for query, other, differ in matches:
        distance = np.bitwise_count(differ)
        keep = distance <= max_distance
        yield query[keep], other[keep], distance[keep]


def _columns(parts: Iterable[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Parts of three columns, each column joined into one array (none: three empty ones)."""
    columns = list(zip(*parts))
    if not columns:
        return tuple(np.empty(0, dtype=np.int64) for _ in range(3))
    return tuple(np.concatenate(column) for column in columns)


def phash_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i, j), i < j, of `hashes` within `max_distance` bits, and its distance."""
    if max_distance < 0:
        raise ValueError(f"max_distance must be 0 or more bits, not {max_distance}")
    count = max(3, -(-(max_distance + 1) // (MOST_FLIPS + 1)))  # bands enough for <= MOST_FLIPS bits per band
    # A pair's first matching band is the same from either side: with i < j kept, it comes once.
    matches = _band_matches(hashes, hashes, bands(count), max_distance // count, keep=lambda query, other: query < other)
    return _columns(_within(matches, max_distance))


def nearest_phash_matches(hashes: np.ndarray, max_distance: int,
                          limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each image's `limit` nearest other pHashes within max_distance (ties: the lower index first),
    as (image, other, distance) rows: what one pHash neighbour query per image with that limit
    would answer.

    Pairs are found between distinct hash VALUES, never between images: n images with one value
    (blank pages, black frames, one logo in every folder) would be n*n/2 pairs, 50M rows for 10k
    blank scans. Every member of a value has the same neighbours but itself, so each value's
    `limit + 1` nearest images (its own members and those of the values near it, at most
    `limit + 1` of each by index: a member further down its value cannot be among the nearest)
    serve all of its members, each dropping itself."""
    values, value_of = np.unique(hashes, return_inverse=True)
    members, bounds = _runs(value_of, len(values))  # each value's images, by index
    first, second, distance = phash_pairs(values, max_distance)
    # (value, value whose first members are its candidates, distance): itself, then both directions
    asker = np.concatenate([np.arange(len(values)), first, second])
    source = np.concatenate([np.arange(len(values)), second, first])
    apart = np.concatenate([np.zeros(len(values), dtype=distance.dtype), distance, distance])
    row, position = _spans(bounds[source], np.minimum(np.diff(bounds), limit + 1)[source])
    value, other, apart = nearest_first(asker[row], members[position], apart[row], limit + 1)
    # Each image gets its value's list (sorted by value, then nearest first) without itself.
    counts = np.bincount(value, minlength=len(values))
    image, position = _spans((np.cumsum(counts) - counts)[value_of], counts[value_of])
    keep = other[position] != image
    return nearest_first(image[keep], other[position][keep], apart[position][keep], limit)


def _spans(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positions starts[k] .. starts[k] + lengths[k] - 1 of every span k, one span after the
    other, and the span each position belongs to: (span, position)."""
    span = np.repeat(np.arange(len(lengths)), lengths)
    return span, np.arange(len(span)) - np.repeat(np.cumsum(lengths) - lengths - starts, lengths)


def nearest_first(image: np.ndarray, other: np.ndarray, distance: np.ndarray,
                  limit: int | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, other, distance) rows sorted by image, then distance, then other, each image's
    first `limit` (one for all, or one per image index) only."""
    order = np.lexsort((other, distance, image))
    image, other, distance = image[order], other[order], distance[order]
    run_start = np.flatnonzero(_starts(image))
    rank = np.arange(len(image)) - np.repeat(run_start, np.diff(np.r_[run_start, len(image)]))
    keep = rank < (limit[image] if isinstance(limit, np.ndarray) else limit)
    return image[keep], other[keep], distance[keep]


def turned_pairs(hashes: np.ndarray, variants: np.ndarray, owners: np.ndarray,
                 max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What grouping.turned_copies finds, vectorised: (image, other, distance) for every rotation or
    mirror `variants[k]` of image `owners[k]` that shares a 16-bit band with the pHash of another
    image `other` and is within max_distance bits of it; the smallest distance per (image, other)."""
    matches = _band_matches(variants, hashes, bands(TURNED_BANDS), 0,
                            keep=lambda variant, other: owners[variant] != other)
    variant, other, distance = _columns(_within(matches, max_distance))
    image = owners[variant]
    order = np.lexsort((distance, other, image))
    image, other, distance = image[order], other[order], distance[order]
    first = _starts(image) | _starts(other)
    return image[first], other[first], distance[first]


def _starts(values: np.ndarray) -> np.ndarray:
    """Where a run of equal values begins."""
    starts = np.ones(len(values), dtype=bool)
    starts[1:] = values[1:] != values[:-1]
    return starts


def semantic_neighbours(vectors: np.ndarray, max_distance: float,
                        limits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, other, cosine distance) rows: for each image (a row of `vectors`), its `limits[image]`
    nearest others within max_distance, nearest first, among the images of its PROBES nearest cells.
    The rows of `vectors` are scaled to unit length in place: a copy would double the memory."""
    count = len(vectors)
    if count < 2:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    units = vectors
    for start in range(0, count, BLOCK):
        block = units[start:start + BLOCK]
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
    centres = _cell_centres(units, max(1, round(count ** 0.5)))
    probes = min(PROBES, len(centres))
    nearest = np.empty((count, probes), dtype=np.int64)  # each image's nearest cells, its own first
    for start in range(0, count, BLOCK):
        similarity = units[start:start + BLOCK] @ centres.T
        top = np.argpartition(-similarity, probes - 1, axis=1)[:, :probes]
        order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1)
        nearest[start:start + BLOCK] = np.take_along_axis(top, order, axis=1)
    by_cell, bounds = _runs(nearest[:, 0], len(centres))
    searches, asked = _runs(nearest.ravel(), len(centres))
    askers = searches // probes  # the images that search each cell, cell after cell
    parts = []
    for cell in range(len(centres)):
        members = by_cell[bounds[cell]:bounds[cell + 1]]
        queries = askers[asked[cell]:asked[cell + 1]]
        if len(members) == 0 or len(queries) == 0:
            continue
        step = max(1, CELL_BLOCK // len(members))
        for start in range(0, len(queries), step):
            asking = queries[start:start + step]
            similarity = units[asking] @ units[members].T
            similarity[asking[:, None] == members[None, :]] = -np.inf  # not itself: infinitely far
            row, column = np.nonzero(similarity >= 1 - max_distance)
            distance = np.subtract(1, similarity, out=similarity)  # in place: blocks are up to CELL_BLOCK
            row, column = _nearest_in_row(distance, row, column, int(limits[asking].max(initial=0)))
            # Each image's nearest in this cell only: a collection of look-alikes puts nearly every
            # pair of a cell within the radius, and each (image, other) pair comes from one cell alone.
            parts.append(nearest_first(asking[row], members[column], distance[row, column], limits))
    image, other, distance = _columns(parts)
    return nearest_first(image, other, distance, limits)


def _nearest_in_row(distance: np.ndarray, row: np.ndarray, column: np.ndarray,
                    limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Of the hits (row, column) of `distance` (in row-major order), at most `limit` per row: the
    nearest, ties by the lower column (the lower image index: a cell lists its members by index),
    as nearest_first orders them. A thousand identical images (blank pages) would otherwise be a
    million hits in one cell."""
    if limit == 0:
        return row[:0], column[:0]
    rows = len(distance)
    per_row = np.bincount(row, minlength=rows)
    crowded = np.flatnonzero(per_row > limit)
    if len(crowded) == 0:
        return row, column
    # Each crowded row's limit-th smallest distance: below it every hit, at it the first columns.
    threshold = np.full(rows, np.inf, dtype=distance.dtype)
    threshold[crowded] = np.partition(distance[crowded], limit - 1, axis=1)[:, limit - 1]
    value = distance[row, column]
    below, tied = value < threshold[row], value == threshold[row]
    tied_per_row = np.bincount(row[tied], minlength=rows)
    tie_rank = np.cumsum(tied) - np.repeat(np.cumsum(tied_per_row) - tied_per_row, per_row)
    keep = below | (tied & (tie_rank <= limit - np.bincount(row[below], minlength=rows)[row]))
    return row[keep], column[keep]


def _cell_centres(units: np.ndarray, cells: int) -> np.ndarray:
    """Spherical k-means centres of a sample of the unit vectors (a fixed seed: the same cells every run)."""
    from scipy.sparse import coo_matrix  # here, not at the top: as in grouping.verification_order

    rng = np.random.default_rng(0)
    sample = units[rng.choice(len(units), min(len(units), cells * KMEANS_SAMPLE), replace=False)]
    centres = sample[rng.choice(len(sample), cells, replace=False)]
    for _ in range(KMEANS_ROUNDS):
        cell = np.argmax(sample @ centres.T, axis=1)
        sums = coo_matrix((np.ones(len(cell), dtype=units.dtype), (cell, np.arange(len(cell)))),
                          shape=(cells, len(cell))).tocsr() @ sample
        filled = np.linalg.norm(sums, axis=1) > 0  # a cell that lost all its images keeps its centre
        centres[filled] = sums[filled] / np.linalg.norm(sums[filled], axis=1, keepdims=True)
    return centres
