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
    .venv/bin/python -m bench.grouping_cost --keep /tmp/cost   # keeps the stack's data and photos
                                                               # there: a second run only rescans

Besides wall time, the CPU seconds of each process (this one, Weaviate, the module server) in
each phase, since a loaded machine stretches wall time but not CPU time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.neardup.run import PrivateStack
from bench.procstats import cpu_seconds, stack_pids
from deeplens.connectors.modules_client import ModulesClient
from deeplens.samples import TRANSFORMS, jpeg_bytes, synthetic_image

EDITS = ("recompress", "crop", "border", "watermark")
PORTS = ("DEEPLENS_WEAVIATE_URL", "DEEPLENS_WEAVIATE_GRPC_PORT", "DEEPLENS_MODULES_URL")


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
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the data and photos in DIR and reuse them (the scan of a second run finds "
                             "nothing to do); default: a temporary folder, deleted at the end")
    args = parser.parse_args()
    images = args.images // (len(EDITS) + 1) * (len(EDITS) + 1)
    with contextlib.ExitStack() as cleanup:
        folder = args.keep or Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="deeplens-grouping-cost-")))
        photos = folder / f"photos-{images}"
        if not photos.is_dir():
            (folder / "writing").mkdir(parents=True, exist_ok=True)
            write_images(folder / "writing", args.images)
            (folder / "writing").rename(photos)  # only a complete set is reused
        stack = PrivateStack(folder / "data")
        # A kept collection names the module server's URL (its vectorizer's inferenceUrl): the same ports again.
        ports = folder / "ports.json"
        if ports.exists():
            stack.env.update(json.loads(ports.read_text()))
        else:
            ports.write_text(json.dumps({name: stack.env[name] for name in PORTS}))
        cleanup.enter_context(stack)
        stack("storage", "add", "photos", str(photos))
        started = time.perf_counter()
        stack("scan", "photos")
        scan_s = time.perf_counter() - started
        os.environ.update(stack.env)  # the in-process run below talks to the same stack
        pids = {"bench": os.getpid(), **stack_pids(folder / "data")}
        found, modules, features, phases = _grouping(pids)
    before, verification = phases
    after = {name: before[name] + verification[name] for name in before}
    before["cpu"], after["cpu"] = (sum(phase[name] for name in pids) for phase in (before, after))
    print(f"\nMachine: {platform.node()} ({os.cpu_count()} cores, {platform.machine()}), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, scan of {images} images took {scan_s:.0f} s; "
          f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} at the end.\n")
    print("| | before (candidate search + grouping) | after (with verification) | ratio |")
    print("|---|---:|---:|---:|")
    for name in ("wall", *pids, "cpu"):
        label = {"wall": "wall seconds", "cpu": "CPU seconds, these processes together"}.get(
            name, f"CPU seconds, {name}")
        ratio = f"{after[name] / before[name]:.2f}x" if name in ("wall", "cpu") else ""
        print(f"| {label} | {before[name]:.1f} | {after[name]:.1f} | {ratio} |")
    print(f"| ms per image (wall) | {1000 * before['wall'] / images:.2f} | {1000 * after['wall'] / images:.2f} | |")
    print(f"| module calls per image | 0 | {modules.calls / images:.3f} ({modules.pairs} pairs verified in "
          f"{modules.calls} calls) | |")
    computed, cached = features.get("computed", 0), features.get("cache", 0)
    print(f"| images' verification features computed / taken from the server's cache | | "
          f"{computed:.0f} / {cached:.0f} ({computed / images:.2f} computed per image) | |")
    print(f"| groups | | {len(found.groups)} | |")
    print(f"| similar / unverified pairs | | {len(found.similar)} / {len(found.unverified)} | |")


def _grouping(pids: dict[str, int]):
    """The grouping core's run: its result, the counting client, the server's count of features
    found, and the wall and CPU seconds of each process before verification started and during it."""
    from deeplens.config import Settings
    from deeplens.connectors.queries.grouping import near_duplicates
    from deeplens.connectors.queries.weaviate import WeaviateBackend
    from deeplens.connectors.weaviate_client import connect

    def now() -> dict[str, float]:
        return {"wall": time.perf_counter(), **{name: cpu_seconds(pid) for name, pid in pids.items()}}

    # on_total is called once when the images are known, and again when verification starts
    # (the star grouping after it, milliseconds, is counted with verification).
    marks: list[dict[str, float]] = []
    settings = Settings()
    client = connect(settings)
    try:
        with CountingModules(settings.modules_url) as modules:
            started = now()
            found = near_duplicates(WeaviateBackend(client, modules), modules,
                                    on_total=lambda total: marks.append(now()))
            ended = now()
            features = modules.features_found()
    finally:
        client.close()
    verifying = marks[1] if len(marks) > 1 else ended
    phases = ({name: verifying[name] - started[name] for name in started},
              {name: ended[name] - verifying[name] for name in started})
    return found, modules, features, phases


if __name__ == "__main__":
    main()
