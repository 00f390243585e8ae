"""The one client of the module server's batch features API (`POST /v1/features`), used by the scan
worker and by both query backends: typed features, one retry and error policy.

The pHash variants come back by name (`identity`, `rot90`, ... as named in modules/phash.py), so
no caller relies on the position of "the image as it is" in a list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import httpx
import orjson

from deeplens.config import Settings
from deeplens.connectors.retry import retry

Feature = Literal["phash", "dihedral", "semantic", "info"]
IDENTITY = "identity"  # the dihedral variant that is the image as it is (modules/phash.py DIHEDRAL)
JSON_CONTENT = {"Content-Type": "application/json"}


class FeatureError(ValueError):
    """The module server refused one image (it could not decode it); the message says why."""


@dataclass(frozen=True)
class Features:
    phash: str | None = None  # 16 hex digits, the image as it is
    dihedral: dict[str, str] | None = None  # variant name -> pHash hex of the image turned/mirrored that way
    semantic: list[float] | None = None  # embedding of the server's profile

    @property
    def variants(self) -> list[str]:
        """The distinct pHashes of all eight variants, the image as it is first."""
        named = self.dihedral or {}
        return list(dict.fromkeys([named.get(IDENTITY) or self.phash, *named.values()]))


class ModulesClient:
    def __init__(self, url: str, timeout: float = 120):
        self.url = url
        key = Settings().modules_api_key  # a module server may require a bearer key (modules/routes/common.py)
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        self._http = httpx.Client(base_url=url, timeout=timeout, headers=headers)

    def __enter__(self) -> ModulesClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def meta(self) -> dict:
        """GET /meta: the server's profile and models (`deeplens es setup` reads the embedding dims)."""
        response = self._http.get("/meta")
        response.raise_for_status()
        return response.json()

    def features(self, thumbnails: list[str], wanted: Iterable[Feature]) -> list[Features | FeatureError]:
        """Features of each base64 image, in order; an image the server refused is a FeatureError
        in its place, so one bad image does not fail the batch."""
        if not thumbnails:
            return []
        body = {"images": [{"id": str(i), "data": t} for i, t in enumerate(thumbnails)], "features": list(wanted)}
        return [_parse(result) for result in self._post_results("/v1/features", body)]

    def verify(self, images: list[str], pairs: list[tuple[int, int]], mirror: bool = True) -> list[dict | FeatureError]:
        """Geometric verification (POST /v1/verify) of each pair of base64 images (indexes into
        `images`), in order: the evidence (modules/verify.py), or a FeatureError where an image
        could not be read. mirror: also try the second image mirrored."""
        if not pairs:
            return []
        return [FeatureError(f"module server: {r['error']}") if "error" in r else r
                for r in self._post_results("/v1/verify", {"images": images, "pairs": pairs, "mirror": mirror})]

    def _post_results(self, path: str, body: dict) -> list[dict]:
        """The `results` of a POST of `body`, with orjson both ways: the same bytes as httpx's json=
        (compact), but a verify call carries hundreds of thumbnails (json.dumps ~40 ms) and a scan
        chunk's embeddings are tens of thousands of floats, which json parses ~5x slower."""
        content = orjson.dumps(body)
        response = retry(lambda: self._http.post(path, content=content, headers=JSON_CONTENT).raise_for_status(),
                         what="module server")
        return orjson.loads(response.content)["results"]

    def embed_text(self, text: str) -> list[float]:
        """The semantic embedding of a text (POST /semantic/vectorize, the route Weaviate's
        multi2vec-clip module calls): how a precomputed collection is searched by text. A profile
        without a text tower refuses it; the FeatureError carries the server's message and fix."""
        try:
            response = retry(lambda: self._http.post("/semantic/vectorize", json={"texts": [text]}).raise_for_status(),
                             what="module server")
        except httpx.HTTPStatusError as exc:  # a 4xx (retry gives those up at once): the server says why
            try:
                reason = exc.response.json()["error"]
            except (ValueError, KeyError, TypeError):
                reason = f"HTTP {exc.response.status_code}"
            raise FeatureError(f"module server: {reason}") from None
        return response.json()["textVectors"][0]

    def features_of(self, thumbnail: str, wanted: Iterable[Feature]) -> Features:
        [result] = self.features([thumbnail], wanted)
        if isinstance(result, FeatureError):
            raise result
        return result


def _parse(result: dict) -> Features | FeatureError:
    if "error" in result:
        return FeatureError(f"module server: {result['error']}")
    return Features(
        phash=result["phash"]["hex"] if "phash" in result else None,
        dihedral=result.get("phash_dihedral"),
        semantic=result.get("semantic"),
    )
