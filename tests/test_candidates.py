"""The in-memory candidate search of `duplicates --near` (connectors/queries/candidates.py) against
brute force: every pair within the distance, no other, at every distance up to and past the limit."""

from __future__ import annotations

import numpy as np
import pytest

from deeplens.connectors.queries import candidates
from deeplens.connectors.queries.candidates import (
    bands, hash_array, nearest_phash_matches, phash_pairs, semantic_neighbours, turned_pairs,
)
from deeplens.connectors.queries.grouping import _with_row


def random_hashes(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 2**63, size=count, dtype=np.int64).astype(np.uint64) * np.uint64(2) + \
        rng.integers(0, 2, size=count).astype(np.uint64)


def flipped(rng: np.random.Generator, value: np.uint64, bits: int) -> np.uint64:
    mask = 0
    for bit in rng.choice(64, size=bits, replace=False):
        mask |= 1 << int(bit)
    return value ^ np.uint64(mask)


def brute_force_pairs(hashes: np.ndarray, max_distance: int) -> dict[tuple[int, int], int]:
    distance = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    first, second = np.nonzero(np.triu(distance <= max_distance, 1))
    return {(int(i), int(j)): int(distance[i, j]) for i, j in zip(first, second)}


@pytest.fixture
def planted() -> np.ndarray:
    """Random hashes, and copies of some of them with 0..12 bits flipped (several of each distance),
    some hashes held three times (identical), and copies whose flips all fall in one band."""
    rng = np.random.default_rng(15)
    hashes = list(random_hashes(rng, 400))
    for bits in range(13):
        for original in rng.choice(400, size=6, replace=False):
            hashes.append(flipped(rng, hashes[original], bits))
    hashes += [hashes[7], hashes[7], hashes[8]]
    for shift, width in bands(3):  # 2 bits in every band: 6 bits apart, no band equal
        hashes.append(hashes[9] ^ np.uint64(0b11 << shift))
        hashes.append(hashes[10] ^ np.uint64(((1 << width) - 1) << shift))  # a whole band flipped
    return np.array(hashes, dtype=np.uint64)


@pytest.mark.parametrize("max_distance", [0, 1, 2, 3, 5, 7, 8, 9, 12])
def test_phash_pairs_are_exactly_the_pairs_within_max_distance(planted, max_distance):
    first, second, distance = phash_pairs(planted, max_distance)
    found = {(int(i), int(j)): int(d) for i, j, d in zip(first, second, distance)}
    assert len(found) == len(first)  # each pair once
    expected = brute_force_pairs(planted, max_distance)
    assert found == expected
    # The planted copies cover every distance up to the limit, and the limit itself.
    assert set(range(max_distance + 1)) <= set(expected.values())


def test_pairs_at_max_distance_plus_one_are_left_out():
    rng = np.random.default_rng(3)
    base = random_hashes(rng, 1)[0]
    hashes = np.array([base, flipped(rng, base, 8), flipped(rng, base, 9)], dtype=np.uint64)
    first, second, distance = phash_pairs(hashes, 8)
    assert list(zip(first.tolist(), second.tolist(), distance.tolist())) == [(0, 1, 8)]


def test_identical_hashes_pair_up_at_distance_zero():
    hashes = hash_array(["f0f0f0f0f0f0f0f0"] * 4)
    first, second, distance = phash_pairs(hashes, 8)
    assert sorted(zip(first.tolist(), second.tolist())) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert set(distance.tolist()) == {0}


def test_no_hashes_and_a_negative_distance():
    assert all(len(column) == 0 for column in phash_pairs(np.empty(0, dtype=np.uint64), 8))
    with pytest.raises(ValueError, match="max_distance must be 0 or more"):
        phash_pairs(hash_array(["00"]), -1)


def brute_force_nearest(hashes: np.ndarray, max_distance: int, limit: int) -> list[tuple[int, int, int]]:
    """Each image's `limit` nearest others within max_distance, nearest first, ties by index."""
    distance = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    rows = []
    for image in range(len(hashes)):
        near = sorted((int(distance[image, other]), other) for other in range(len(hashes))
                      if other != image and distance[image, other] <= max_distance)
        rows += [(image, other, d) for d, other in near[:limit]]
    return rows


@pytest.mark.parametrize("limit", [1, 2, 3, 50])
def test_nearest_phash_matches_are_each_images_nearest_as_a_query_with_that_limit_would_answer(planted, limit):
    # The planted set holds one value three times and several twice: the values' lists are shared.
    many = np.concatenate([planted, np.repeat(planted[:3], 4)])
    rows = list(zip(*(column.tolist() for column in nearest_phash_matches(many, 8, limit))))
    assert rows == brute_force_nearest(many, 8, limit)


def test_thousands_of_identical_hashes_are_not_paired_one_by_one():
    # 20,000 blank pages: 200M pairs if every pair were built; each keeps its 3 lowest-numbered others.
    hashes = np.concatenate([np.zeros(20_000, dtype=np.uint64), hash_array(["1", "ffffffffffffffff"])])
    image, other, distance = nearest_phash_matches(hashes, 8, 3)
    assert len(image) == 20_001 * 3
    assert other[:6].tolist() == [1, 2, 3, 0, 2, 3] and other[-3:].tolist() == [0, 1, 2]
    assert set(distance[image < 20_000].tolist()) == {0} and set(distance[image == 20_000].tolist()) == {1}


def test_turned_pairs_are_the_band_sharing_variants_within_max_distance():
    rng = np.random.default_rng(5)
    hashes = random_hashes(rng, 300)
    variants, owners = [], []
    for owner in range(300):
        for _ in range(3):
            target = hashes[int(rng.integers(300))]
            variants.append(flipped(rng, target, int(rng.integers(0, 12))) if rng.random() < 0.3 else random_hashes(rng, 1)[0])
            owners.append(owner)
    variants, owners = np.array(variants, dtype=np.uint64), np.array(owners)
    image, other, distance = turned_pairs(hashes, variants, owners, 8)
    found = {(int(i), int(j)): int(d) for i, j, d in zip(image, other, distance)}

    differ = variants[:, None] ^ hashes[None, :]  # every variant against every image
    shares_band = np.zeros(differ.shape, dtype=bool)
    for band in range(4):
        shares_band |= (differ >> np.uint64(16 * band)) & np.uint64(0xFFFF) == 0
    bits = np.bitwise_count(differ)
    variant, index = np.nonzero(shares_band & (bits <= 8) & (owners[:, None] != np.arange(len(hashes))[None, :]))
    expected: dict[tuple[int, int], int] = {}
    for owner, other, distance in zip(owners[variant].tolist(), index.tolist(), bits[variant, index].tolist()):
        expected[owner, other] = min(expected.get((owner, other), distance), distance)
    assert found == expected and expected


def brute_force_neighbours(vectors: np.ndarray, max_distance: float, limit: int) -> dict[int, list[tuple[int, float]]]:
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    distance = 1 - units @ units.T
    np.fill_diagonal(distance, np.inf)  # an image is not its own neighbour
    image, other = np.nonzero(distance <= max_distance)
    order = np.lexsort((other, distance[image, other], image))  # per image: nearest first, then the lower index
    out: dict[int, list[tuple[int, float]]] = {}
    for i, j in zip(image[order].tolist(), other[order].tolist()):
        nearest = out.setdefault(i, [])
        if len(nearest) < limit:
            nearest.append((j, float(distance[i, j])))
    return out


def near_copies(rng: np.random.Generator, count: int, dims: int, copies: int) -> np.ndarray:
    """Random directions, and copies of some nudged to ~0.04 cosine distance (as in bench.query_latency)."""
    vectors = rng.standard_normal((count, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for copy in range(count - copies, count):
        nudged = vectors[copy - count + copies] + 0.3 * rng.standard_normal(dims).astype(np.float32) / dims ** 0.5
        vectors[copy] = nudged / np.linalg.norm(nudged)
    return vectors


def test_semantic_neighbours_equal_brute_force_when_every_cell_is_searched():
    rng = np.random.default_rng(11)
    vectors = near_copies(rng, 60, 32, 20)  # 8 cells, 8 probes: every image is compared with every other
    vectors[5] = vectors[4]  # identical embeddings
    image, other, distance = semantic_neighbours(vectors, 0.16, np.full(60, 3))
    found: dict[int, list[tuple[int, float]]] = {}
    for i, j, d in zip(image.tolist(), other.tolist(), distance.tolist()):
        found.setdefault(i, []).append((j, d))
    expected = brute_force_neighbours(vectors, 0.16, 3)
    assert found.keys() == expected.keys() and 5 in expected[4][0]
    for key in expected:
        assert [j for j, _ in found[key]] == [j for j, _ in expected[key]]
        assert np.allclose([d for _, d in found[key]], [d for _, d in expected[key]], atol=1e-5)


def test_semantic_neighbours_find_near_copies_among_many_cells_and_respect_each_limit():
    rng = np.random.default_rng(12)
    count, copies = 3000, 300
    vectors = near_copies(rng, count, 64, copies)
    limits = np.where(np.arange(count) % 2 == 0, 1, 0)  # odd images ask for none
    image, other, distance = semantic_neighbours(vectors, 0.16, limits)
    assert set(image.tolist()) <= set(range(0, count, 2))
    assert np.bincount(image, minlength=count).max() <= 1
    expected = brute_force_neighbours(vectors, 0.16, 1)
    assert {(i, j) for i, j in zip(image.tolist(), other.tolist())} <= {
        (i, j) for i, rows in expected.items() for j, _ in rows}
    # Approximate like the HNSW query it replaces; near copies of random directions are nearly all found.
    wanted = [(i, rows[0][0]) for i, rows in expected.items() if i % 2 == 0]
    found = set(zip(image.tolist(), other.tolist()))
    assert sum(pair in found for pair in wanted) >= 0.97 * len(wanted)


@pytest.mark.parametrize("cell_block", [1 << 22, 3000])  # one block per cell, and a few rows at a time
def test_a_thousand_identical_embeddings_keep_each_images_lowest_numbered_others(monkeypatch, cell_block):
    # 1,000 blank pages in one cell: 1M pairs within the radius, of which each image keeps 3.
    monkeypatch.setattr(candidates, "CELL_BLOCK", cell_block)
    rng = np.random.default_rng(13)
    vectors = np.concatenate([np.ones((1000, 32), dtype=np.float32), near_copies(rng, 100, 32, 10)])
    image, other, distance = semantic_neighbours(vectors, 0.16, np.full(len(vectors), 3))
    blank = image < 1000
    assert np.bincount(image[blank], minlength=1000).tolist() == [3] * 1000
    assert other[blank][:6].tolist() == [1, 2, 3, 0, 2, 3] and other[blank][-3:].tolist() == [0, 1, 2]
    assert np.allclose(distance[blank], 0, atol=1e-6)
    assert set(other[~blank].tolist()) >= {1000 + i for i in range(10)}  # the near copies still find each other


def test_exported_embeddings_fill_one_matrix_that_grows_past_the_count():
    # Counted 2 images before the export, 5 came (a scan added some); two have no embedding.
    vectors = np.zeros((2, 0), dtype=np.float32)
    for row, embedding in enumerate([[1.0, 2.0], None, [3.0, 4.0], [], [5.0, 6.0]]):
        vectors = _with_row(vectors, row, embedding)
    assert vectors.dtype == np.float32 and len(vectors) >= 5
    assert vectors[:5].tolist() == [[1, 2], [0, 0], [3, 4], [0, 0], [5, 6]]
    # An embedding of another length than the longest matches nothing either: a row of zeros.
    vectors = np.zeros((3, 0), dtype=np.float32)
    for row, embedding in enumerate([[1.0], [2.0, 3.0], [4.0]]):
        vectors = _with_row(vectors, row, embedding)
    assert vectors.tolist() == [[0, 0], [2, 3], [0, 0]]
