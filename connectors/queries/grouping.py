"""Duplicate groups with match tiers: one algorithm, asked of any backend (queries/backend.py).

Tiers of a pair (a member and its group's kept copy):
  - `exact`: the same bytes (`content_sha256`).
  - `near`: the same picture after re-encoding, resizing or colour changes (pHashes within
    max_distance bits, see hash_matches), or turned by 90/180/270 degrees or mirrored (a
    rotation/mirror of one pHash within max_distance of the other's, matched by hash bands, see
    turned_copies).
  - `derived`: a crop, border, watermark or small rotation of the same picture: a semantic
    candidate (cosine within max_semantic_distance, see semantic_candidates) CONFIRMED by geometric
    verification on the module server (modules/verify.py). Embedding distance alone only says
    "the same kind of picture".
  - `similar`: a semantic candidate that verification rejected. Never grouped, never wasted
    bytes; listed only on request, for review.
A candidate that could not be verified (an image unreadable, no thumbnail in the index) is
listed as `unverified` with the reason, and never grouped. A hash-only index has no embeddings:
there, exact and near alone. Candidates are found in memory over one export of the collection
(queries/candidates.py), not by queries per image.

Groups are stars (see star_groups): every member matched the kept copy itself, so unrelated
images never chain into one group. An image that matched other members of a group but not its
kept copy (left out, or in a second group of the same picture) is verified once against that
group's kept copy (see missed_members).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime

import numpy as np

from deeplens.connectors.modules_client import FeatureError, ModulesClient
from deeplens.connectors.queries import candidates as in_memory
from deeplens.connectors.queries.backend import Backend, NotAnswered
from deeplens.modules.phash import hamming

DEFAULT_MAX_DISTANCE = 8  # pHash bits of 64; best F1 on the tuning split of bench/neardup (bench/RESULTS.md)
# Cosine distance, offline profile (MobileNetV2), of a candidate that verification then confirms:
# decided on the tune splits of bench/neardup and bench/neardup2 with verification (bench/RESULTS.md):
# 0.2 ties 0.16 on the first and lifts recall on the second at the same precision, once verification
# measures the overhang between the pictures inside the bars (modules/verify.py).
DEFAULT_MAX_SEMANTIC_DISTANCE = 0.2
NEIGHBOURS = 50  # most pHash matches kept per image, nearest first (as the pHash query's limit was)
# Semantic candidates verified per image, nearest first: a collection of look-alikes (one style,
# bursts) makes every image a candidate of every other, and each pair costs a verification.
SEMANTIC_CANDIDATES = 5
# Pairs per module server call. A call sends each of its images once, and an image is part of ~9
# pairs: at 10k look-alikes, 256 instead of 32 sent a fifth fewer images in 168 calls instead of
# 1333 (bench/RESULTS.md, "Cost of verification").
VERIFY_BATCH = 256
VERIFY_THREADS = 4  # module server calls at once: it verifies a call's pairs on all its cores
THUMBNAILS_KEPT = 4096  # as many as the module server keeps the features of (~20 KB each, base64)
TIERS = ("exact", "near", "derived")


@dataclass(frozen=True)
class Evidence:
    hamming: int  # pHash bits between the two, after the best rotation/mirror
    cosine: float | None = None  # embedding cosine distance, for pairs found by the semantic query
    verification: dict | None = None  # geometric check (modules/verify.py), for semantic candidates

    def as_json(self) -> dict:
        return {name: value for name, value in asdict(self).items() if value is not None}


def _seen_from(verification: dict | None, flip: bool) -> dict | None:
    """Verification evidence of the pair (a, b) told from b's side: the inverse transform."""
    if verification is None or not flip or verification.get("scale") is None:
        return verification
    return verification | {
        "scale": round(1 / verification["scale"], 3), "rotation_deg": -verification["rotation_deg"],
        "a_in_b": verification["b_in_a"], "b_in_a": verification["a_in_b"],
        "derived": {"a": "b", "b": "a"}.get(verification.get("derived")),
    }


@dataclass(frozen=True)
class Match:
    tier: str  # "near" or "derived" (exact is told by the members' hashes)
    evidence: Evidence
    verified_from: str | None = None  # the id that was image "a" of the verification

    def seen_from(self, uuid: str) -> Evidence:
        """The evidence with `uuid` as image "a" (the kept copy's side)."""
        flip = self.verified_from is not None and self.verified_from != uuid
        return replace(self.evidence, verification=_seen_from(self.evidence.verification, flip))

    def edited(self, uuid: str) -> bool:
        """Whether verification found `uuid` to be the edited copy of this pair (crop, bordered)."""
        return (self.seen_from(uuid).verification or {}).get("derived") == "a"


@dataclass
class Member:
    uuid: str
    location: str
    uri: str
    size_bytes: int
    pixels: int
    content_sha256: str
    has_border: bool = False  # a uniform margin around the picture (connectors/extract.py)
    modified_at: datetime | None = None  # as listed by the storage when it was scanned
    tier: str = "kept"  # how this copy matches the group's kept copy: kept, exact, near or derived
    evidence: Evidence | None = None

    @property
    def distance(self) -> int:  # pHash bits from the kept copy
        return self.evidence.hamming if self.evidence else 0

    @classmethod
    def of(cls, uuid: str, properties: dict) -> Member:
        return cls(
            uuid=uuid,
            location=properties["location"],
            uri=properties["uri"],
            size_bytes=int(properties["size_bytes"]),
            pixels=int(properties.get("width") or 0) * int(properties.get("height") or 0),
            content_sha256=properties["content_sha256"],
            has_border=bool(properties.get("has_border")),
            modified_at=_as_datetime(properties.get("modified_at")),
        )

    def as_json(self) -> dict:
        return {"uri": self.uri, "location": self.location, "size_bytes": self.size_bytes, "distance": self.distance,
                "tier": self.tier, "has_border": self.has_border,
                "evidence": self.evidence.as_json() if self.evidence else None}


def _as_datetime(value: datetime | str | None) -> datetime | None:
    # Weaviate's client returns datetimes, Elasticsearch the ISO text it was given.
    return datetime.fromisoformat(value) if isinstance(value, str) else value


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
    kind: str  # the loosest tier among the members: "exact", "near" or "derived"
    members: list[Member] = field(default_factory=list)  # the kept copy first

    @property
    def wasted_bytes(self) -> int:
        return sum(m.size_bytes for m in self.members) - self.members[0].size_bytes

    def as_json(self) -> dict:
        return {"kind": self.kind, "members": [m.as_json() for m in self.members], "wasted_bytes": self.wasted_bytes}


@dataclass(frozen=True)
class Pair:
    """Two images that are not grouped: `similar` (verification said no) or `unverified` (it could not run)."""

    a: Member
    b: Member
    evidence: Evidence
    reason: str | None = None  # why it could not be verified

    def as_json(self) -> dict:
        return {"a": self.a.uri, "b": self.b.uri, "evidence": self.evidence.as_json(),
                **({"reason": self.reason} if self.reason else {})}


@dataclass
class NearDuplicates:
    groups: list[Group]
    similar: list[Pair] = field(default_factory=list)
    unverified: list[Pair] = field(default_factory=list)


def keep_order(member: Member) -> tuple:
    # Among equally connected copies, the one to keep: the default keep rules of `deeplens plan`
    # (cleanup/keep.py) over what grouping knows: not derived, most pixels, lossless, older, larger
    # file, shorter URI. Imported here, not at the top: keep.py is the cleanup's, grouping only asks it.
    from deeplens.connectors.cleanup.keep import member_key

    return member_key(member)


def by_wasted_bytes(groups: list[Group]) -> list[Group]:
    return sorted(groups, key=lambda g: -g.wasted_bytes)


def exact_groups(backend: Backend, locations: list[str] | None = None) -> list[Group]:
    groups = []
    for copies in backend.exact_copies(locations):
        members = sorted((Member.of(uuid, properties) for uuid, properties in copies), key=keep_order)
        if len(members) > 1:
            groups.append(Group("exact", [members[0], *(replace(m, tier="exact", evidence=Evidence(0))
                                                         for m in members[1:])]))
    return by_wasted_bytes(groups)


def near_groups(backend: Backend, modules: ModulesClient, **options) -> list[Group]:
    return near_duplicates(backend, modules, **options).groups


def near_duplicates(
    backend: Backend,
    modules: ModulesClient,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    max_semantic_distance: float = DEFAULT_MAX_SEMANTIC_DISTANCE,
    locations: list[str] | None = None,
    on_total: Callable[[int], None] = lambda total: None,
    on_done: Callable[[int], None] = lambda count: None,
) -> NearDuplicates:
    """Near-duplicate groups, and the semantic candidates that were not confirmed (`modules`
    verifies them)."""
    semantic = max_semantic_distance > 0 and not backend.hash_only()
    images: dict[str, Member] = {}
    hashes: dict[str, Hashes] = {}
    # One float32 row per image, filled as the export comes (no list of rows stacked afterwards: at
    # 1M images x 1280 dims each holds 5 GB). Sized by the images counted before the export: zeros
    # take no memory until written (calloc), and it grows only if a scan adds images meanwhile.
    vectors = np.zeros((_image_count(backend, locations) if semantic else 0, 0), dtype=np.float32)
    rows = (backend.images_with_embeddings(locations) if semantic
            else ((uuid, properties, None) for uuid, properties in backend.images(locations)))
    for uuid, properties, embedding in rows:
        if properties.get("phash"):  # an image the module server could not hash has nothing to compare
            if semantic:
                vectors = _with_row(vectors, len(images), embedding)
            images[uuid] = Member.of(uuid, properties)
            hashes[uuid] = Hashes.of(properties)
    on_total(len(images))

    # Candidates found in memory over the export (queries/candidates.py), not queried per image.
    graph = hash_matches(hashes, max_distance)
    near: dict[str, dict[str, float]] = {}
    if semantic and images:
        near = semantic_candidates(list(images), vectors[:len(images)], graph, max_semantic_distance)
    del vectors
    on_done(len(images))
    candidates: dict[tuple[str, str], float] = {}  # each unordered pair once, not already a hash match
    for uuid, chosen in near.items():
        for other, cosine in chosen.items():
            if uuid not in graph.get(other, {}):
                key = (uuid, other) if uuid < other else (other, uuid)
                candidates[key] = min(cosine, candidates.get(key, cosine))

    result = NearDuplicates(groups=[])

    def verify(pairs: dict[tuple[str, str], float | None]) -> None:
        for (a, b), cosine, outcome in _verify(backend, modules, pairs, on_done):
            evidence = Evidence(hashes[a].distance_to(hashes[b]), cosine,
                                outcome if isinstance(outcome, dict) else None)
            if isinstance(outcome, str):
                result.unverified.append(Pair(images[a], images[b], evidence, outcome))
            elif outcome["verified"]:
                graph.setdefault(a, {})[b] = Match("derived", evidence, verified_from=a)
            else:
                result.similar.append(Pair(images[a], images[b], evidence))

    if candidates:
        on_total(len(images) + len(candidates))
        verify(candidates)
    result.groups = star_groups(images, graph)
    if semantic:
        second = {pair: None for pair in missed_members(result.groups, graph) if pair not in candidates}
        if second:
            on_total(len(images) + len(candidates) + len(second))
            verify(second)
            result.groups = star_groups(images, graph)
    return result


def _image_count(backend: Backend, locations: list[str] | None) -> int:
    """Images in the locations (all when None), by one aggregate query."""
    return sum(images for location, (images, _) in backend.location_totals().items()
               if not locations or location in locations)


def _with_row(vectors: np.ndarray, row: int, embedding: list[float] | None) -> np.ndarray:
    """`vectors` with `embedding` as its row `row`. An image without an embedding, or with one of
    another length than the longest, keeps a row of zeros: it matches nothing."""
    count, dims = vectors.shape
    if embedding and len(embedding) > dims:  # the first embedding (or a longer one): the rows before stay zeros
        vectors = np.zeros((count, len(embedding)), dtype=np.float32)
    if row == len(vectors):  # more images than counted before the export: a scan is adding some
        grown = np.zeros((count + count // 4 + 1, vectors.shape[1]), dtype=np.float32)
        grown[:count] = vectors
        vectors = grown
    if embedding and len(embedding) == vectors.shape[1]:
        vectors[row] = embedding
    return vectors


def hash_matches(hashes: dict[str, Hashes], max_distance: int) -> dict[str, dict[str, Match]]:
    """Each image's pHash matches, found in memory (queries/candidates.py): its rotated/mirrored
    copies (turned_copies) and its NEIGHBOURS nearest other pHashes within max_distance: what one
    pHash neighbour query per image answered, exactly instead of by HNSW."""
    ids = list(hashes)
    phashes = in_memory.hash_array([hashes[uuid].phash for uuid in ids])
    found = {uuid: {other: Match("near", Evidence(distance)) for other, distance in turned.items()}
             for uuid, turned in turned_copies(hashes, max_distance, phashes).items()}
    for image, other, distance in _rows(in_memory.nearest_phash_matches(phashes, max_distance, NEIGHBOURS)):
        matches = found.setdefault(ids[image], {})
        if ids[other] not in matches or distance < matches[ids[other]].evidence.hamming:
            matches[ids[other]] = Match("near", Evidence(distance))
    return found


def semantic_candidates(ids: list[str], vectors: np.ndarray, found: dict[str, dict[str, Match]],
                        max_semantic_distance: float) -> dict[str, dict[str, float]]:
    """Each image's SEMANTIC_CANDIDATES nearest images by embedding (`vectors`, one row per id;
    cosine within max_semantic_distance) that are not its hash matches (`found`), found in memory
    (queries/candidates.py): what one semantic neighbour query per image answered."""
    # Each image's nearest, as many as its hash matches and the candidates: those come first.
    limits = np.array([len(found.get(uuid, {})) + SEMANTIC_CANDIDATES for uuid in ids], dtype=np.int64)
    near: dict[str, dict[str, float]] = {}
    for image, other, cosine in _rows(in_memory.semantic_neighbours(vectors, max_semantic_distance, limits)):
        chosen = near.setdefault(ids[image], {})
        if ids[other] not in found.get(ids[image], {}) and len(chosen) < SEMANTIC_CANDIDATES:
            chosen[ids[other]] = round(cosine, 4)
    return near


def missed_members(groups: list[Group], graph: dict[str, dict[str, Match]]) -> list[tuple[str, str]]:
    """(kept copy, image) pairs worth one more verification: an image that matched a member of a
    group but not its kept copy, whether it is in no group or in another one. Groups are stars, so
    such an image stays out even when it is a copy of the group's picture (its semantic candidates
    were other copies of it, never the kept copy), or it starts a second group of that picture (a
    split group). Only the kept copy is asked, so this cannot chain either. Safe since verification
    compares colours, in studio shots where the object is (modules/verify.py): before, different
    products shot in one studio passed, and this second check joined whole families of them
    (bench/RESULTS.md). `graph` as star_groups left it: each match on both sides."""
    grouped = {member.uuid: group.members[0].uuid for group in groups for member in group.members}
    pairs = set()
    for uuid, found in graph.items():
        for kept in {grouped[other] for other in found if other in grouped}:
            if kept != grouped.get(uuid) and kept not in found:  # not its own group, not a match already
                pairs.add((kept, uuid) if kept < uuid else (uuid, kept))
    return sorted(pairs)


def _verify(backend: Backend, modules: ModulesClient, candidates: dict[tuple[str, str], float | None],
            on_done: Callable[[int], None]):
    """(pair, cosine, the verification dict or the reason it could not run) for each candidate."""
    pairs = verification_order(list(candidates))
    thumbnails_kept = RecentThumbnails(backend, THUMBNAILS_KEPT)

    def batch(chunk: list[tuple[str, str]]) -> list:
        thumbnails = thumbnails_kept.get(list({uuid for pair in chunk for uuid in pair}))
        readable = {pair: bool(thumbnails.get(pair[0]) and thumbnails.get(pair[1])) for pair in chunk}
        missing = [pair for pair in chunk if not readable[pair]]
        ready = [pair for pair in chunk if readable[pair]]
        ids = list({uuid for pair in ready for uuid in pair})
        index = {uuid: i for i, uuid in enumerate(ids)}
        try:
            # No mirrored retry: mirrored copies are pHash matches, and most candidates in a
            # collection of look-alikes are rejected, which a retry would make twice as dear.
            verdicts = modules.verify([thumbnails[uuid] for uuid in ids], [(index[a], index[b]) for a, b in ready],
                                      mirror=False)
        except RuntimeError as exc:  # the module server failed after its retries
            verdicts = [FeatureError(str(exc))] * len(ready)
        outcomes = {pair: ("the index holds no thumbnail of one image (Elasticsearch: run `deeplens es setup "
                           "--keep-thumbnails` and scan again)") for pair in missing}
        outcomes.update({pair: str(v) if isinstance(v, FeatureError) else v for pair, v in zip(ready, verdicts)})
        on_done(len(chunk))
        return [(pair, candidates[pair], outcomes[pair]) for pair in chunk]

    chunks = [pairs[i:i + VERIFY_BATCH] for i in range(0, len(pairs), VERIFY_BATCH)]
    with ThreadPoolExecutor(VERIFY_THREADS) as pool:
        for results in pool.map(batch, chunks):
            yield from results


class RecentThumbnails:
    """The thumbnails of the images verified lately, by id, fetched from the index when missing.
    An image is part of ~9 pairs, which come in several calls (verification_order keeps them close):
    fetching it each time cost the index and this process more than the module server spends on it."""

    def __init__(self, backend: Backend, size: int):
        self.backend = backend
        self.size = size
        self._kept: OrderedDict[str, str | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ids: list[str]) -> dict[str, str | None]:
        with self._lock:
            found = {uuid: self._kept[uuid] for uuid in ids if uuid in self._kept}
            for uuid in found:
                self._kept.move_to_end(uuid)
        missing = [uuid for uuid in ids if uuid not in found]
        fetched = self.backend.thumbnails(missing) if missing else {}
        with self._lock:
            self._kept.update(fetched)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return found | fetched


def verification_order(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs ordered so that each image's pairs lie close together: the module server keeps the
    features of the images it verified lately (modules/verify.py, KeypointCache), and an image is
    part of several pairs. The order is reverse Cuthill-McKee's on the graph of candidate pairs (it
    keeps linked images close in a row). In simulated 10k-image candidate graphs (5 links an image)
    it cut the images a 4,096-image cache computes again by a fifth (random links) to a half (links
    between near points), against an order by id."""
    # Here, not at the top: scipy.sparse adds ~0.1 s to every CLI start, and only this needs it.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    ids = sorted({uuid for pair in pairs for uuid in pair})
    index = {uuid: i for i, uuid in enumerate(ids)}
    rows = [index[a] for a, _ in pairs]
    cols = [index[b] for _, b in pairs]
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (rows, cols)), shape=(len(ids), len(ids))).tocsr()
    rank = np.empty(len(ids), dtype=np.int64)
    rank[reverse_cuthill_mckee(graph, symmetric_mode=False)] = np.arange(len(ids))
    return sorted(pairs, key=lambda pair: sorted((rank[index[pair[0]]], rank[index[pair[1]]])))


@dataclass
class Explanation:
    tier: str  # exact, near, derived, similar, unverified, or different
    evidence: Evidence
    reasons: list[str]

    def as_json(self) -> dict:
        return {"tier": self.tier, "evidence": self.evidence.as_json(), "reasons": self.reasons}


def explain(
    backend: Backend,
    modules: ModulesClient,
    uri_a: str,
    uri_b: str,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    max_semantic_distance: float = DEFAULT_MAX_SEMANTIC_DISTANCE,
) -> Explanation:
    """Why two indexed images do or do not match, by the rules near_duplicates applies to a pair.
    (In a group, a member must also match the kept copy itself, see star_groups.)"""
    found = backend.by_uri([uri_a, uri_b])
    missing = [uri for uri in (uri_a, uri_b) if uri not in found]
    if missing:
        raise NotAnswered(f"not in the index: {', '.join(missing)}. Give URIs as `deeplens duplicates` or "
                          "`deeplens search` print them, of scanned locations.")
    a, b = found[uri_a], found[uri_b]
    if not (a.properties.get("phash") and b.properties.get("phash")):
        raise NotAnswered("the module server could not hash one of the images; see `deeplens scan --errors`")
    bits = Hashes.of(a.properties).distance_to(Hashes.of(b.properties))
    cosine = _cosine_distance(a.semantic, b.semantic) if a.semantic and b.semantic else None
    if a.properties["content_sha256"] == b.properties["content_sha256"]:
        return Explanation("exact", Evidence(bits, cosine), ["the same bytes (sha256)"])
    if bits <= max_distance:
        return Explanation("near", Evidence(bits, cosine), [
            f"pHashes {bits} bits apart after the best rotation/mirror (at most {max_distance}): the same "
            "picture re-encoded, resized, recoloured, turned or mirrored"])
    reasons = [f"pHashes {bits} bits apart after the best rotation/mirror: more than {max_distance}, not a near copy"]
    thumbnails = (a.properties.get("thumbnail"), b.properties.get("thumbnail"))
    [verification] = modules.verify(list(thumbnails), [(0, 1)]) if all(thumbnails) else [None]
    evidence = Evidence(bits, cosine, verification if isinstance(verification, dict) else None)
    if cosine is None:
        return Explanation("different", evidence, [*reasons, "no semantic vectors (hash-only index): crops, "
                                                              "borders and watermarks are not looked for"])
    if cosine > max_semantic_distance:
        return Explanation("different", evidence, [*reasons, f"embeddings {cosine:g} apart (cosine distance, "
                                                              f"candidates within {max_semantic_distance:g}): not a candidate"])
    reasons.append(f"embeddings {cosine:g} apart (within {max_semantic_distance:g}): a candidate for a derived copy")
    if not isinstance(verification, dict):
        why = str(verification) if verification else "the index holds no thumbnail of one image"
        return Explanation("unverified", evidence, [*reasons, f"geometric verification could not run: {why}"])
    summary = (f"{verification['inliers']} of {verification['matches']} feature matches agree on one transform "
               f"(rotation {verification['rotation_deg']} deg, scale {verification['scale']}, "
               f"{'mirrored' if verification['mirror'] else 'not mirrored'})")
    if verification.get("hue_disagreement") is not None:  # a copy keeps its colours (modules/verify.py)
        summary += (f"; once aligned, their hues differ on {verification['hue_disagreement']:.0%} of the pixels "
                    "coloured in both")
    if verification.get("object_inlier_share") is not None:  # a studio shot: one object? (modules/verify.py)
        summary += (f"; where both show an object in front of the backdrop, {verification['object_inlier_share']:.0%} "
                    "of the features there fit the transform and the grey levels there correlate at "
                    f"{verification['object_correlation']:.2f}")
    if verification["verified"]:
        return Explanation("derived", evidence, [*reasons, f"verified: {summary}"])
    return Explanation("similar", evidence, [*reasons, f"not verified: {summary}; it looks alike but is not a copy"])


def _cosine_distance(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return round(float(1 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y))), 4)


def turned_copies(hashes: dict[str, Hashes], max_distance: int,
                  phashes: np.ndarray | None = None) -> dict[str, dict[str, int]]:
    """Rotated and mirrored copies, by hash bands instead of seven more vector queries per image.

    A copy turned by 90/180/270 degrees or mirrored has a pHash within a few bits of the matching
    rotation/mirror of the original (bench/neardup: at most 2); candidates.turned_pairs looks each
    variant up among the images' pHashes by 16-bit bands. `phashes`: the images' pHashes as
    in_memory.hash_array, in the order of `hashes`, where the caller has them already."""
    ids = list(hashes)
    if phashes is None:
        phashes = in_memory.hash_array([hashes[uuid].phash for uuid in ids])
    owners = np.array([number for number, uuid in enumerate(ids) for _ in hashes[uuid].turned], dtype=np.int64)
    variants = in_memory.hash_array([variant for uuid in ids for variant in hashes[uuid].turned])
    found: dict[str, dict[str, int]] = {}
    for image, other, distance in _rows(in_memory.turned_pairs(phashes, variants, owners, max_distance)):
        found.setdefault(ids[image], {})[ids[other]] = distance
    return found


def _rows(columns: tuple[np.ndarray, ...]):
    return zip(*(column.tolist() for column in columns))


def star_groups(images: dict[str, Member], graph: dict[str, dict[str, Match]]) -> list[Group]:
    """Star-shaped groups around the copy to keep: a member joins only its centre's group, so a
    chain of pairwise-similar images never pulls unrelated ones together, and every member's tier
    and evidence describe its match with the kept copy itself. Centres are the images with the
    most matches, then the most hash matches (a derived copy, which matches fewer of the others
    and only by verification, is not kept over its source), then the fewest pairs in which
    verification found it to be the edited copy (the crop, the bordered one), then keep order.
    `graph` maps an image to its matches; a pair found from either side counts."""
    for uuid, found in list(graph.items()):
        for other, match in found.items():
            graph.setdefault(other, {}).setdefault(uuid, match)

    def centre_order(uuid: str) -> tuple:
        matches = graph.get(uuid, {})
        return (-len(matches), -sum(m.tier == "near" for m in matches.values()),
                sum(m.edited(uuid) for m in matches.values()), keep_order(images[uuid]))

    groups = []
    assigned: set[str] = set()
    for uuid in sorted(images, key=centre_order):
        if uuid in assigned or not graph.get(uuid):
            continue
        kept = images[uuid]
        members = []
        for other, match in sorted(graph[uuid].items(), key=lambda item: (item[1].evidence.hamming, item[0])):
            if other not in assigned and other in images:
                copy = images[other]
                tier = "exact" if copy.content_sha256 == kept.content_sha256 else match.tier
                if tier == "near" and copy.has_border and not kept.has_border:
                    tier = "derived"  # the pHash matched once the border was trimmed: a framed copy
                members.append(replace(copy, tier=tier, evidence=match.seen_from(uuid)))
                assigned.add(other)
        if members:
            assigned.add(uuid)
            kind = max((m.tier for m in members), key=TIERS.index)
            groups.append(Group(kind, [kept, *sorted(members, key=keep_order)]))
    return by_wasted_bytes(groups)
