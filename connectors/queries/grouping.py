"""Exact and near-duplicate groups: one algorithm, asked of any backend (queries/backend.py).

Exact: the same `content_sha256` (the backend counts them).
Near: two images are near-duplicates when either
  - their pHashes are within max_distance bits (a Hamming neighbour query on the pHash vector):
    recompression, resizing, colour changes; or
  - one's pHash is within a few bits of a rotation/mirror of the other's (stored as
    `phash_dihedral`; matched by hash bands, see turned_copies): 90/180/270 rotations, mirrors; or
  - their semantic embeddings are within max_semantic_distance (a cosine neighbour query on the
    stored vector): crops, borders, watermarks and slight rotations, which move a 64-bit pHash
    too far. A hash-only index has no embeddings: there, the first two alone.
Groups are built star-wise (see star_groups), so unrelated images never chain into one group.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from deeplens.connectors.queries.backend import Backend
from deeplens.modules.phash import BITS, hamming

DEFAULT_MAX_DISTANCE = 8  # pHash bits of 64; best F1 on the tuning split of bench/neardup (bench/RESULTS.md)
DEFAULT_MAX_SEMANTIC_DISTANCE = 0.08  # cosine distance, offline profile (MobileNetV2); same tuning
NEIGHBOURS = 50  # most candidates fetched per query
PHASH_BANDS = 4  # 16-bit bands: hashes within Hamming distance 3 share one for sure


@dataclass
class Member:
    uuid: str
    location: str
    uri: str
    size_bytes: int
    pixels: int
    content_sha256: str
    distance: int = 0  # pHash bits from the group's centre

    @classmethod
    def of(cls, uuid: str, properties: dict) -> Member:
        return cls(
            uuid=uuid,
            location=properties["location"],
            uri=properties["uri"],
            size_bytes=int(properties["size_bytes"]),
            pixels=int(properties.get("width") or 0) * int(properties.get("height") or 0),
            content_sha256=properties["content_sha256"],
        )


@dataclass(frozen=True)
class Hashes:
    """An image's pHash and the distinct pHashes of its rotations/mirrors (itself left out)."""

    phash: str
    turned: tuple[str, ...] = ()

    @classmethod
    def of(cls, properties: dict) -> Hashes:
        phash = properties["phash"]
        return cls(phash, tuple(v for v in dict.fromkeys(properties.get("phash_dihedral") or ()) if v != phash))

    def distance_to(self, other: Hashes) -> int:
        """Smallest pHash distance from this image to the other or any rotation/mirror of it."""
        return min(hamming(self.phash, variant) for variant in (other.phash, *other.turned))


@dataclass
class Group:
    kind: str  # "exact" or "near"
    members: list[Member] = field(default_factory=list)  # the kept copy first

    @property
    def wasted_bytes(self) -> int:
        return sum(m.size_bytes for m in self.members) - self.members[0].size_bytes

    def as_json(self) -> dict:
        return {
            "kind": self.kind,
            "members": [
                {"uri": m.uri, "location": m.location, "size_bytes": m.size_bytes, "distance": m.distance}
                for m in self.members
            ],
            "wasted_bytes": self.wasted_bytes,
        }


def keep_order(member: Member) -> tuple:
    # The copy to keep: most pixels, then largest file, then shortest URI (stable and explainable).
    return (-member.pixels, -member.size_bytes, len(member.uri), member.uri)


def by_wasted_bytes(groups: list[Group]) -> list[Group]:
    return sorted(groups, key=lambda g: -g.wasted_bytes)


def exact_groups(backend: Backend, locations: list[str] | None = None) -> list[Group]:
    return by_wasted_bytes(
        [Group("exact", sorted((Member.of(uuid, properties) for uuid, properties in copies), key=keep_order))
         for copies in backend.exact_copies(locations) if len(copies) > 1]
    )


def near_groups(
    backend: Backend,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    max_semantic_distance: float = DEFAULT_MAX_SEMANTIC_DISTANCE,
    locations: list[str] | None = None,
    on_total: Callable[[int], None] = lambda total: None,
    on_done: Callable[[int], None] = lambda count: None,
    workers: int = 8,
) -> list[Group]:
    images: dict[str, Member] = {}
    hashes: dict[str, Hashes] = {}
    for uuid, properties in backend.images(locations):
        if properties.get("phash"):  # an image the module server could not hash has nothing to compare
            images[uuid] = Member.of(uuid, properties)
            hashes[uuid] = Hashes.of(properties)
    on_total(len(images))

    turned = turned_copies(hashes, max_distance)
    semantic = max_semantic_distance > 0 and not backend.hash_only()

    def neighbours(uuid: str) -> dict[str, int]:
        found: dict[str, int] = dict(turned.get(uuid, {}))
        for hit in backend.phash_neighbours(hashes[uuid].phash, max_distance, NEIGHBOURS, locations):
            if hit.id != uuid and hit.id in images:
                found[hit.id] = min(found.get(hit.id, BITS), round(hit.distance))
        if semantic:
            for hit in backend.semantic_neighbours(uuid, max_semantic_distance, NEIGHBOURS, locations):
                if hit.id != uuid and hit.id in images and hit.id not in found:
                    found[hit.id] = hashes[uuid].distance_to(hashes[hit.id])
        on_done(1)
        return found

    with ThreadPoolExecutor(workers) as pool:  # independent queries: the database answers several at once
        graph = dict(zip(images, pool.map(neighbours, images)))
    return star_groups(images, graph)


def phash_bands(phash_hex: str) -> list[str]:
    width = len(phash_hex) // PHASH_BANDS
    return [f"{band}:{phash_hex[band * width:(band + 1) * width]}" for band in range(PHASH_BANDS)]


def turned_copies(hashes: dict[str, Hashes], max_distance: int) -> dict[str, dict[str, int]]:
    """Rotated and mirrored copies, by hash bands instead of seven more vector queries per image.

    A copy turned by 90/180/270 degrees or mirrored has a pHash within a few bits of the matching
    rotation/mirror of the original (bench/neardup: at most 2). With 4 bands of 16 bits, hashes
    within 3 bits share at least one band exactly, so looking up each variant's bands among the
    images' own bands finds those pairs in one pass over the collection."""
    by_band: dict[str, list[str]] = {}
    for uuid, image in hashes.items():
        for band in phash_bands(image.phash):
            by_band.setdefault(band, []).append(uuid)
    found: dict[str, dict[str, int]] = {}
    for uuid, image in hashes.items():
        for variant in image.turned:
            for other in {other for band in phash_bands(variant) for other in by_band.get(band, ())}:
                distance = hamming(variant, hashes[other].phash)
                if other != uuid and distance <= max_distance:
                    pairs = found.setdefault(uuid, {})
                    pairs[other] = min(pairs.get(other, distance), distance)
    return found


def star_groups(images: dict[str, Member], graph: dict[str, dict[str, int]]) -> list[Group]:
    """Star-shaped groups: a member joins only its centre's group, so a chain of pairwise-similar
    images never pulls unrelated ones together. Centres are the images with the most
    near-duplicates (ties: keep order), so a letterboxed or rotated copy, which matches fewer of
    the others, does not split its family. Within a group the kept copy comes first and
    `distance` is each member's pHash distance to the centre. `graph` maps an image to its
    near-duplicates and their pHash distance; a pair found from either side counts."""
    for uuid, found in list(graph.items()):
        for other, distance in found.items():
            graph.setdefault(other, {}).setdefault(uuid, distance)
    groups = []
    assigned: set[str] = set()
    centres = sorted(images, key=lambda u: (-len(graph.get(u, ())), keep_order(images[u])))
    for uuid in centres:
        if uuid in assigned or not graph.get(uuid):
            continue
        members = [replace(images[uuid], distance=0)]
        for other, distance in sorted(graph[uuid].items(), key=lambda item: (item[1], item[0])):
            if other not in assigned and other in images:
                members.append(replace(images[other], distance=distance))
                assigned.add(other)
        if len(members) > 1:
            assigned.add(uuid)
            kind = "exact" if len({m.content_sha256 for m in members}) == 1 else "near"
            groups.append(Group(kind, sorted(members, key=keep_order)))
    return by_wasted_bytes(groups)
