"""Exact and near-duplicate groups, computed by Weaviate.

Exact: the same `content_sha256` (counted over a cursor), then the members of every group of two or more.
Near: two images are near-duplicates when either
  - their pHashes are within max_distance bits (a Weaviate nearVector query on `phash`, hamming):
    recompression, resizing, colour changes; or
  - one's pHash is within a few bits of a rotation/mirror of the other's (stored as
    `phash_dihedral`; matched by hash bands, see turned_copies): 90/180/270 rotations, mirrors; or
  - their `semantic` embeddings are within max_semantic_distance (a Weaviate nearObject query,
    cosine): crops, borders, watermarks and slight rotations, which move a 64-bit pHash too far.
    A hash-only collection has no embeddings: there, the first two alone.
Groups are built star-wise (see star_groups), so unrelated images never chain into one group.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import weaviate
from weaviate.classes.query import Filter, MetadataQuery

from deeplens.modules.phash import hamming, hex_to_vector
from deeplens.schema.models import phash_bands
from deeplens.schema.weaviate import IMAGE_COLLECTION, PHASH_VECTOR, SEMANTIC_VECTOR, is_hash_only

DEFAULT_MAX_DISTANCE = 8  # pHash bits of 64; best F1 on the tuning split of bench/neardup (bench/RESULTS.md)
DEFAULT_MAX_SEMANTIC_DISTANCE = 0.08  # cosine distance, offline profile (MobileNetV2); same tuning
MEMBER_PROPERTIES = ["location", "uri", "path", "size_bytes", "width", "height", "content_sha256", "phash", "phash_dihedral"]
NEIGHBOURS = 50  # most candidates fetched per query


@dataclass
class Member:
    uuid: str
    location: str
    uri: str
    size_bytes: int
    pixels: int
    content_sha256: str
    distance: int = 0


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


def _member(obj) -> Member:
    return member_of(str(obj.uuid), obj.properties)


def member_of(uuid: str, p: dict) -> Member:
    return Member(
        uuid=uuid,
        location=p["location"],
        uri=p["uri"],
        size_bytes=int(p["size_bytes"]),
        pixels=int(p.get("width") or 0) * int(p.get("height") or 0),
        content_sha256=p["content_sha256"],
    )


def keep_order(member: Member) -> tuple:
    # The copy to keep: most pixels, then largest file, then shortest URI (stable and explainable).
    return (-member.pixels, -member.size_bytes, len(member.uri), member.uri)


def _location_filter(locations: list[str] | None):
    return Filter.by_property("location").contains_any(locations) if locations else None


def phash_distance(phash: str, other_variants: list[str]) -> int:
    """Smallest pHash distance to any rotation/mirror of the other image (shown as `distance`)."""
    return min(hamming(phash, variant) for variant in other_variants)


def exact_groups(client: weaviate.WeaviateClient, locations: list[str] | None = None) -> list[Group]:
    """Content hashes held more than once, then their members. The hashes are counted over a cursor
    of the one property: Aggregate groupBy returns every group, singletons included, and took 369 s
    at 100k images against 4.5 s for the cursor (bench/RESULTS.md)."""
    collection = client.collections.use(IMAGE_COLLECTION)
    where = _location_filter(locations)
    counts: dict[str, int] = {}
    for obj in collection.iterator(return_properties=["content_sha256", "location"]):
        if not locations or obj.properties["location"] in locations:
            sha = obj.properties["content_sha256"]
            counts[sha] = counts.get(sha, 0) + 1
    shas = [sha for sha, count in counts.items() if count > 1]
    members: dict[str, list[Member]] = {sha: [] for sha in shas}
    for start in range(0, len(shas), 100):
        sha_filter = Filter.by_property("content_sha256").contains_any(shas[start:start + 100])
        response = collection.query.fetch_objects(
            filters=sha_filter & where if where else sha_filter, limit=10_000, return_properties=MEMBER_PROPERTIES
        )
        for obj in response.objects:
            members[obj.properties["content_sha256"]].append(_member(obj))
    groups = [Group("exact", sorted(group, key=keep_order)) for group in members.values() if len(group) > 1]
    return sorted(groups, key=lambda g: -g.wasted_bytes)


def near_groups(
    client: weaviate.WeaviateClient,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    max_semantic_distance: float = DEFAULT_MAX_SEMANTIC_DISTANCE,
    locations: list[str] | None = None,
    on_total: Callable[[int], None] = lambda total: None,
    on_done: Callable[[int], None] = lambda count: None,
    workers: int = 8,
) -> list[Group]:
    collection = client.collections.use(IMAGE_COLLECTION)
    where = _location_filter(locations)
    images = {}
    hashes = {}
    for obj in collection.iterator(return_properties=MEMBER_PROPERTIES):
        if locations and obj.properties["location"] not in locations:
            continue
        if not obj.properties.get("phash"):
            continue
        member = _member(obj)
        images[member.uuid] = member
        hashes[member.uuid] = obj.properties.get("phash_dihedral") or [obj.properties["phash"]]
    on_total(len(images))

    turned = turned_copies(hashes, max_distance)
    if is_hash_only(client):
        max_semantic_distance = 0

    def neighbours(uuid: str) -> dict[str, int]:
        found: dict[str, int] = dict(turned.get(uuid, {}))
        for variant in hashes[uuid][:1]:  # the image as it is; turned copies are matched above
            response = collection.query.near_vector(
                near_vector=hex_to_vector(variant),
                target_vector=PHASH_VECTOR,
                distance=max_distance,
                limit=NEIGHBOURS,
                filters=where,
                return_metadata=MetadataQuery(distance=True),
                return_properties=[],
            )
            for obj in response.objects:
                other = str(obj.uuid)
                if other != uuid and other in images:
                    found[other] = min(found.get(other, 64), round(obj.metadata.distance))
        if max_semantic_distance > 0:
            response = collection.query.near_object(
                near_object=uuid,
                target_vector=SEMANTIC_VECTOR,
                distance=max_semantic_distance,
                limit=NEIGHBOURS,
                filters=where,
                return_properties=[],
            )
            for obj in response.objects:
                other = str(obj.uuid)
                if other != uuid and other in images and other not in found:
                    found[other] = phash_distance(hashes[uuid][0], hashes[other])
        on_done(1)
        return found

    with ThreadPoolExecutor(workers) as pool:
        graph = dict(zip(images, pool.map(neighbours, images)))

    return star_groups(images, graph)


def turned_copies(hashes: dict[str, list[str]], max_distance: int) -> dict[str, dict[str, int]]:
    """Rotated and mirrored copies, by hash bands instead of seven more vector queries per image.

    A copy turned by 90/180/270 degrees or mirrored has a pHash within a few bits of the matching
    rotation/mirror of the original (bench/neardup: at most 2). With 4 bands of 16 bits, hashes
    within 3 bits share at least one band exactly, so looking up each variant's bands among the
    images' own bands finds those pairs in one pass over the collection."""
    by_band: dict[str, list[str]] = {}
    for uuid, variants in hashes.items():
        for band in phash_bands(variants[0]):
            by_band.setdefault(band, []).append(uuid)
    found: dict[str, dict[str, int]] = {}
    for uuid, variants in hashes.items():
        for variant in dict.fromkeys(variants[1:]):
            for other in {other for band in phash_bands(variant) for other in by_band.get(band, ())}:
                distance = hamming(variant, hashes[other][0])
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
    return sorted(groups, key=lambda g: -g.wasted_bytes)
