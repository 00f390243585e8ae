"""What rescanning a small location costs as the index grows: change detection reads what the index
holds for the location (connectors/scan.py `known_objects`) by one filtered query when the location
holds at most ONE_QUERY objects, and by the cursor over the whole collection otherwise (the only
way before; Weaviate's cursor takes no filter).

Starts a private embedded stack, scans a location of 100 real JPEGs, then grows the index with
SYNTHETIC objects in another location (self-provided vectors, bench/query_latency.py's maker) and,
at each size, times `known_objects` for the small location both ways and a whole `deeplens scan`
of it (nothing changed, CLI start to exit).

    .venv/bin/python -m bench.rescan_cost --sizes 10000,50000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bench.neardup.run import PrivateStack
from bench.query_latency import SyntheticMaker, insert_synthetic, machine_load
from deeplens.samples import jpeg_bytes, synthetic_image

SMALL = 100


def timed(call, repeat: int = 3) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000", help="objects in the index at each step, ascending")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    rows = []
    with tempfile.TemporaryDirectory(prefix="deeplens-rescan-") as tmp, PrivateStack(Path(tmp) / "data") as stack:
        small = Path(tmp) / "small"
        small.mkdir()
        for seed in range(SMALL):
            (small / f"img{seed:03}.jpg").write_bytes(jpeg_bytes(synthetic_image(seed, (320, 240))))
        stack("storage", "add", "small", str(small))
        stack("scan", "small")
        os.environ.update(stack.env)  # the in-process calls below talk to the same stack

        from deeplens.config import Settings
        from deeplens.connectors import scan as scanning
        from deeplens.connectors.weaviate_client import connect
        from deeplens.schema.weaviate import IMAGE_COLLECTION

        client = connect(Settings())
        try:
            images = client.collections.use(IMAGE_COLLECTION)
            dim = len(images.query.fetch_objects(limit=1, include_vector=True).objects[0].vector["semantic"])
            maker = SyntheticMaker(dim)
            for size in sizes:
                missing = size - images.aggregate.over_all(total_count=True).total_count
                if missing > 0:
                    insert_synthetic(images, maker, missing)
                one_query = timed(lambda: list(scanning.known_objects(client, IMAGE_COLLECTION, "small")))
                limit = scanning.ONE_QUERY
                scanning.ONE_QUERY = SMALL // 2  # the cursor path, as for a location over ONE_QUERY objects
                try:
                    cursor = timed(lambda: list(scanning.known_objects(client, IMAGE_COLLECTION, "small")), repeat=1)
                finally:
                    scanning.ONE_QUERY = limit
                rescan = timed(lambda: stack("scan", "small"), repeat=1)
                rows.append((size, one_query, cursor, rescan, machine_load()))
        finally:
            client.close()

    print(f"\nMachine: {platform.node()} ({os.cpu_count()} cores, {platform.machine()}); a location of {SMALL} "
          f"real images in an index of N objects (the rest SYNTHETIC).\n")
    print("| objects in the index | change detection, one filtered query (s) | change detection, cursor (s) | "
          "`deeplens scan` of the location, nothing changed (s) | load (1 min) |")
    print("|---:|---:|---:|---:|---:|")
    for size, one_query, cursor, rescan, load in rows:
        print(f"| {size:,} | {one_query:.3f} | {cursor:.2f} | {rescan:.1f} | {load.get('loadavg1', 0):.1f} |")


if __name__ == "__main__":
    main()
