"""Weaviate's vector compression on `semantic`: uncompressed HNSW against 8-bit RQ, on SYNTHETIC objects.

Per configuration: one private stack (`deeplens up`), one DeepLensImage collection with precomputed
vectors (`phash` as schema/weaviate.py makes it, uncompressed), SYNTHETIC objects from
bench.query_latency.SyntheticMaker inserted in steps. Measured: Weaviate CPU ms per inserted object
and objects/s per step, Weaviate's peak RSS and data dir on disk, recall@10 of nearVector `semantic`
against exact brute force (numpy over the exported vectors), and the query latency (one client,
sequential). Half the queries are stored vectors (search with an indexed image), half new ones from
the same distribution.

Vectors: `random` (SyntheticMaker's random unit vectors: no cluster structure, the worst case for HNSW,
where even the uncompressed index finds ~75 % of the exact top 10) or `clustered` (`SyntheticMaker(clustered=True)`: 500 random
centres, each vector ~0.15 cosine distance from its centre and ~0.28 from the others of its
cluster, like image embeddings).

    .venv/bin/python -m bench.vector_compression                                 # 20k clustered, none vs rq8
    .venv/bin/python -m bench.vector_compression --vectors random --steps 10000
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.grouping_scale import connect_to
from bench.neardup.run import PrivateStack, log
from bench.procstats import disk_mb, proc_status, stack_pids
from bench.query_latency import CpuMeter, SyntheticMaker, insert_synthetic, machine_load, pct

DIMS = 1280  # the offline profile's `semantic`


def vector_config(compression: str) -> list:
    """The precomputed named vectors as schema/weaviate.py makes them, `semantic` compressed as asked."""
    import weaviate.classes as wvc

    from deeplens.schema.weaviate import DISTANCES, SEMANTIC_VECTOR, image_vectors

    quantizer = None if compression == "none" else \
        wvc.config.Configure.VectorIndex.Quantizer.rq(bits=int(compression.removeprefix("rq")))
    vectors = image_vectors("", mode="precomputed")
    for vector in vectors:
        if vector.name == SEMANTIC_VECTOR:
            vector.vectorIndexConfig = wvc.config.Configure.VectorIndex.hnsw(
                distance_metric=DISTANCES[SEMANTIC_VECTOR], quantizer=quantizer)
    return vectors


def run(compression: str, vectors: str, steps: list[int], queries: int, data: Path) -> dict:
    from weaviate.classes.query import MetadataQuery

    from deeplens.schema.models import ImageRecord
    from deeplens.schema.weaviate import IMAGE_COLLECTION, SEMANTIC_VECTOR, properties_of

    stack = PrivateStack(data)
    stack("up")
    out: dict = {"compression": compression, "steps": []}
    try:
        client, _, modules = connect_to(stack)
        client.collections.create(IMAGE_COLLECTION, properties=properties_of(ImageRecord),
                                  vector_config=vector_config(compression))
        collection = client.collections.use(IMAGE_COLLECTION)
        weaviate_pid = stack_pids(data)["weaviate"]
        maker = SyntheticMaker(DIMS, clustered=vectors == "clustered")
        have = 0
        for size in steps:
            with CpuMeter({"weaviate": weaviate_pid}) as meter:
                insert_synthetic(collection, maker, size - have)
            used = meter.summary()
            out["steps"].append({"size": size, "objects_per_s": (size - have) / used["wall_s"],
                                 "weaviate_cpu_ms": 1000 * used["weaviate_cpu_s"] / (size - have),
                                 "load": machine_load()})
            log(f"{compression} {size}: {out['steps'][-1]}")
            have = size
        ids, rows = [], []
        for obj in collection.iterator(include_vector=[SEMANTIC_VECTOR], return_properties=[]):
            ids.append(str(obj.uuid))
            rows.append(obj.vector[SEMANTIC_VECTOR])
        matrix = np.asarray(rows, dtype=np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        stored = matrix[np.random.default_rng(1).choice(len(ids), queries // 2, replace=False)]
        asked = np.concatenate([stored, maker._unit(queries - queries // 2)])
        exact = np.argsort(-(asked @ matrix.T), axis=1)[:, :10]
        recalls, times = [], []
        for query, want in zip(asked, exact):
            started = time.perf_counter()
            got = collection.query.near_vector(near_vector=query.tolist(), target_vector=SEMANTIC_VECTOR, limit=10,
                                               return_metadata=MetadataQuery(distance=True), return_properties=[])
            times.append(time.perf_counter() - started)
            recalls.append(len({ids[j] for j in want} & {str(o.uuid) for o in got.objects}) / 10)
        out["recall"] = float(np.mean(recalls))
        out["latency"] = pct(times)
        out["rss"] = proc_status(weaviate_pid).get("VmHWM", float("nan"))
        out["load"] = machine_load()
        client.close()
        modules.close()
    finally:
        stack("down")
    out["disk_mb"] = disk_mb(data / "weaviate")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compressions", default="none,rq8", help="none, rq8, rq4 or rq1, comma-separated")
    parser.add_argument("--vectors", choices=("clustered", "random"), default="clustered")
    parser.add_argument("--steps", default="10000,20000", help="collection sizes measured in turn, ascending")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    with tempfile.TemporaryDirectory(prefix="deeplens-compression-") as tmp:
        results = []
        for compression in args.compressions.split(","):
            results.append(run(compression, args.vectors, steps, args.queries, Path(tmp) / compression))
            shutil.rmtree(Path(tmp) / compression)
    print(f"\nSYNTHETIC {args.vectors} {DIMS}-d vectors, {args.queries} queries; {os.cpu_count()} cores; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| `semantic` | " + " | ".join(f"Weaviate CPU ms / insert, to {s:,}; objects/s" for s in steps)
          + " | recall@10 vs brute force | nearVector p50 / p95 / p99 ms | Weaviate peak RSS MB | disk MB "
          "| load 1 min; CPU pressure avg60 (end) |")
    print("|---|" + "---:|" * (len(steps) + 5))
    for r in results:
        inserts = " | ".join(f"{s['weaviate_cpu_ms']:.2f}; {s['objects_per_s']:.0f}" for s in r["steps"])
        lat = r["latency"]
        print(f"| {r['compression']} | {inserts} | {r['recall']:.4f} | {lat['p50']:.1f} / {lat['p95']:.1f} / "
              f"{lat['p99']:.1f} | {r['rss']:,.0f} | {r['disk_mb']:,.0f} | {r['load']['loadavg1']:.1f}; "
              f"{r['load'].get('cpu_pressure_avg60', float('nan')):.0f}% |")


if __name__ == "__main__":
    main()
