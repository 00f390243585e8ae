"""What geometric verification adds to `duplicates --near`: time and module calls per image.

Starts a private embedded stack, writes N photo-like JPEGs (a fifth originals from
deeplens.samples.synthetic_image, each with four edited copies: recompressed, cropped, bordered,
watermarked), scans them, then runs the grouping core (connectors.queries.grouping.near_duplicates,
the code behind the CLI) and splits its time:
  - neighbour queries: one pHash and one semantic query per image, and the star grouping; this is
    all that `duplicates --near` did before verification (the "before" column);
  - verification: thumbnails fetched from Weaviate and `/v1/verify` on the module server for each
    semantic candidate that is not a hash match.
Module calls and verified pairs are counted on the client (the real ModulesClient, counting).

    .venv/bin/python -m bench.grouping_cost --images 10000
    .venv/bin/python -m bench.grouping_cost --images 1000      # a few minutes
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.neardup.run import PrivateStack
from deeplens.connectors.modules_client import ModulesClient
from deeplens.samples import TRANSFORMS, jpeg_bytes, synthetic_image

EDITS = ("recompress", "crop", "border", "watermark")


def write_images(folder: Path, count: int) -> None:
    for seed in range(count // (len(EDITS) + 1)):
        original = synthetic_image(seed, (640, 480))
        (folder / f"{seed:06}.jpg").write_bytes(jpeg_bytes(original))
        for edit in EDITS:
            (folder / f"{seed:06}-{edit}.jpg").write_bytes(jpeg_bytes(TRANSFORMS[edit](original)))


class CountingModules(ModulesClient):
    """The real client, counting what verification asks of the module server."""

    calls = pairs = 0

    def verify(self, images, pairs, **options):
        self.calls += 1
        self.pairs += len(pairs)
        return super().verify(images, pairs, **options)

    def features_found(self) -> dict[str, float]:
        """The server's count of images prepared for verification, by source (cache / computed)."""
        text = self._http.get("/metrics").raise_for_status().text
        return {sample.labels["source"]: sample.value for family in text_string_to_metric_families(text)
                for sample in family.samples if sample.name == "deeplens_verify_features_total"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deeplens-grouping-cost-") as tmp, PrivateStack(Path(tmp) / "data") as stack:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        write_images(photos, args.images)
        stack("storage", "add", "photos", str(photos))
        started = time.perf_counter()
        stack("scan", "photos")
        scan_s = time.perf_counter() - started
        os.environ.update(stack.env)  # the in-process run below talks to the same stack

        from deeplens.config import Settings
        from deeplens.connectors.queries.grouping import VERIFY_BATCH, near_duplicates
        from deeplens.connectors.queries.weaviate import WeaviateBackend
        from deeplens.connectors.weaviate_client import connect

        settings = Settings()
        marks: list[float] = []
        client = connect(settings)
        try:
            with CountingModules(settings.modules_url) as modules:
                started = time.perf_counter()
                found = near_duplicates(WeaviateBackend(client, modules), modules,
                                        on_total=lambda total: marks.append(time.perf_counter()))
                ended = time.perf_counter()
                features = modules.features_found()
        finally:
            client.close()
    # on_total is called once when the images are known, and again when verification starts
    # (the star grouping after it, milliseconds, is counted with verification).
    total_s = ended - started
    verification_s = ended - marks[1] if len(marks) > 1 else 0.0
    images = args.images // (len(EDITS) + 1) * (len(EDITS) + 1)
    print(f"\nMachine: {platform.node()} ({os.cpu_count()} cores, {platform.machine()}), scan of {images} images "
          f"took {scan_s:.0f} s.\n")
    print("| | before (neighbour queries + grouping) | after (with verification) |")
    print("|---|---:|---:|")
    print(f"| seconds | {total_s - verification_s:.1f} | {total_s:.1f} |")
    print(f"| ms per image | {1000 * (total_s - verification_s) / images:.2f} | {1000 * total_s / images:.2f} |")
    print(f"| database queries per image | 2 | 2 (+ one thumbnail fetch per {VERIFY_BATCH} pairs verified) |")
    print(f"| module calls per image | 0 | {modules.calls / images:.3f} ({modules.pairs} pairs verified in "
          f"{modules.calls} calls) |")
    computed, cached = features.get("computed", 0), features.get("cache", 0)
    print(f"| images' verification features computed / taken from the server's cache | | "
          f"{computed:.0f} / {cached:.0f} ({computed / images:.2f} computed per image) |")
    print(f"| groups | | {len(found.groups)} |")
    print(f"| similar / unverified pairs | | {len(found.similar)} / {len(found.unverified)} |")


if __name__ == "__main__":
    main()
