"""Similarity search: the query image is prepared exactly like a scanned one (same thumbnail),
then the backend answers: nearest embeddings, or nearest pHashes over all eight rotations/mirrors
of the query for near-duplicates."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import fsspec

from deeplens.connectors.extract import extract
from deeplens.connectors.modules_client import ModulesClient
from deeplens.connectors.queries.backend import RESULT_FIELDS, Backend, Hit
from deeplens.connectors.queries.grouping import DEFAULT_MAX_DISTANCE


def read_query_image(path_or_url: str) -> bytes:
    with fsspec.open(path_or_url, "rb") as handle:  # local path, file://, http(s)://, s3://, ...
        return handle.read()


def search_image(
    backend: Backend,
    modules: ModulesClient,
    data: bytes,
    limit: int = 10,
    locations: list[str] | None = None,
    near_dup: bool = False,
    max_distance: int = DEFAULT_MAX_DISTANCE,
) -> list[dict]:
    thumbnail = extract(data).thumbnail
    if not near_dup:
        return [_result(hit, "distance", round(hit.distance, 4)) for hit in backend.similar_to_image(thumbnail, limit, locations)]

    variants = modules.features_of(thumbnail, ["dihedral"]).variants
    with ThreadPoolExecutor(len(variants)) as pool:  # independent queries: latency of one, not eight
        answers = list(pool.map(
            lambda variant: backend.phash_neighbours(variant, max_distance, limit, locations, RESULT_FIELDS), variants))
    best: dict[str, Hit] = {}
    for hits in answers:
        for hit in hits:
            if hit.id not in best or hit.distance < best[hit.id].distance:
                best[hit.id] = hit
    ranked = sorted(best.values(), key=lambda hit: (hit.distance, hit.properties["uri"]))[:limit]
    return [_result(hit, "hamming_distance", round(hit.distance)) for hit in ranked]


def search_text(backend: Backend, text: str, limit: int = 10, locations: list[str] | None = None) -> list[dict]:
    return [_result(hit, "distance", round(hit.distance, 4)) for hit in backend.similar_to_text(text, limit, locations)]


def _result(hit: Hit, score_name: str, score: float) -> dict:
    return {**{name: hit.properties.get(name) for name in RESULT_FIELDS}, score_name: score}
