"""`duplicates --near` at scale: the grouping core (connectors.queries.grouping.near_duplicates) on
collections of 10k to 100k images, old method against new.

Collections: a few hundred REAL JPEGs scanned with `deeplens scan` (the sample photos, edits of
them, byte copies, photo-like JPEGs: bench.query_latency.write_real_images), topped up with
SYNTHETIC objects inserted with their own vectors (bench.query_latency.SyntheticMaker: random unit
`semantic` vectors, HNSW's worst case, or with `--vectors clustered` vectors around 500 centres,
like image embeddings; uniform random pHashes, ~3% exact and ~5% near copies, no thumbnails). The
output flags them. One build makes every size: the data dir of each size is copied when the
collection reaches it (the largest keeps the build's own), so `--keep DIR` builds once and later
runs reuse DIR/<size>. `--skip-vector-index` builds without Weaviate's vector indexes
(create_unindexed): 1M images in ~35 min, for `duplicates --near`, which queries no index.
`--search N` times N `search --image` and N `search --image --near-dup` calls (the whole connector
path, real photos as queries) on collections built with their indexes; `--skip-grouping` then
leaves `duplicates --near` out.

At each size: the old method (one pHash nearVector and one semantic nearObject per image) where
the size is at most --old-max, the new one always, time per phase, queries per image, CPU seconds
of each process, peak RSS, machine load; and at the smallest size the agreement of the two
(pairs found by both / only one, groups identical). Then the in-memory candidate steps alone
(connectors/queries/candidates.py) on SYNTHETIC hashes and embeddings of --memory-sizes (100k and
1M; the semantic step up to --semantic-max: at 1M it holds 5 GB and takes ~5 CPU minutes).

    .venv/bin/python -m bench.grouping_scale                                  # 10k and 100k
    .venv/bin/python -m bench.grouping_scale --keep /tmp/grouping-scale       # build once, reuse
    .venv/bin/python -m bench.grouping_scale --quick                          # 2000 images (make bench-quick)
    .venv/bin/python -m bench.grouping_scale --keep /tmp/gs1m --sizes 1000000 --skip-vector-index --memory-sizes 0
    .venv/bin/python -m bench.grouping_scale --keep /tmp/gs1m-hnsw --sizes 1000000 --search 200 --skip-grouping --memory-sizes 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.neardup.run import PrivateStack, log
from bench.procstats import disk_mb, proc_status, stack_pids
from bench.query_latency import CpuMeter, SyntheticMaker, insert_synthetic, machine_load, pct, timed, write_real_images

REAL_LOCATION = "real"
OLD_REF = "40216d2"  # the last commit whose near_duplicates sent two queries per image


def stack_in(root: Path, data_dir: Path) -> PrivateStack:
    """A private stack on data_dir whose module server listens where it did when root's collections
    were made: each collection's `inferenceUrl` names it, and Weaviate calls it for nearImage."""
    stack = PrivateStack(data_dir)
    url_file = root / "modules-url"
    if url_file.exists():
        stack.env["DEEPLENS_MODULES_URL"] = url_file.read_text().strip()
    else:
        url_file.write_text(stack.env["DEEPLENS_MODULES_URL"])
    return stack


def connect_to(stack: PrivateStack):
    """Client, backend and module client of the stack, in this process."""
    os.environ.update(stack.env)
    from deeplens.config import Settings
    from deeplens.connectors.modules_client import ModulesClient
    from deeplens.connectors.queries.weaviate import WeaviateBackend
    from deeplens.connectors.weaviate_client import connect

    settings = Settings()
    client = connect(settings)
    modules = ModulesClient(settings.modules_url)
    return client, WeaviateBackend(client, modules), modules


def build(root: Path, sizes: list[int], real: int, skip_index: bool = False, clustered: bool = False) -> None:
    """Every size's data dir under root, in one pass: real scan, then synthetic inserts. An
    interrupted build (root/building) goes on where it stopped. root/build.json keeps each size's
    insert rate and CPU."""
    from deeplens.schema.weaviate import SEMANTIC_VECTOR, apply_schema

    work = root / "building"
    resumed = work.exists()
    photos = root / "photos"
    if not photos.exists():
        write_real_images(photos, real)
    stats_file = root / "build.json"
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    stack = stack_in(root, work)
    stack("up")
    try:
        client, backend, modules = connect_to(stack)
        if not resumed:
            if skip_index:
                create_unindexed(client)
            apply_schema(client, stack.env["DEEPLENS_MODULES_URL"])
            stack("storage", "add", REAL_LOCATION, str(photos))
            started = time.perf_counter()
            stack("scan", REAL_LOCATION)
            log(f"scanned {real} real JPEGs in {time.perf_counter() - started:.0f} s")
        collection = backend.collection
        probe = next(iter(collection.iterator(include_vector=True, return_properties=["location"])))
        maker = SyntheticMaker(len(probe.vector[SEMANTIC_VECTOR]), seed=8 if resumed else 7, clustered=clustered)
        # Synthetic ids come from the maker's count: a resumed build numbers on, not over, the objects there.
        totals = backend.location_totals()
        maker.count = sum(images for images, _ in totals.values()) - totals.get(REAL_LOCATION, (0, 0))[0]
        for size in sizes:
            have = collection.aggregate.over_all(total_count=True).total_count
            with CpuMeter(stack_pids(work) | {"benchmark": os.getpid()}) as meter:
                insert_synthetic(collection, maker, size - have)
            stats[str(size)] = {"inserted": size - have, **meter.summary(), "load": machine_load(),
                                "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                                "vector_indexes": "skipped" if skip_index else "hnsw",
                                "vectors": "clustered" if clustered else "random"}
            stats_file.write_text(json.dumps(stats, indent=2))
            log(f"{size}: inserted {size - have} synthetic objects, {meter.summary()}")
            client.close()
            stack("down")
            if size == sizes[-1]:
                break
            shutil.copytree(work, root / str(size))
            (root / str(size) / "weaviate-ports.json").unlink()  # internal ports picked anew where it runs
            stack("up")
            client, backend, modules = connect_to(stack)
            collection = backend.collection
    finally:
        stack("down")
    (work / "weaviate-ports.json").unlink()
    work.rename(root / str(sizes[-1]))  # the largest size keeps the build's data dir (a copy at 1M is ~10 GB)


def create_unindexed(client) -> None:
    """DeepLensImage as apply_schema makes it with precomputed vectors, but with Weaviate's vector
    indexes skipped (`skip: true`): an insert then costs Weaviate no HNSW work, most of its CPU with
    1280-d vectors (1.0 ms per object up to 1M, against 4.6 ms with the indexes already at 10k), so a
    1M collection builds in reach of 2 cores. `duplicates --near` reads the vectors over the cursor
    and queries no index, so it runs on it as on an indexed one; search cannot."""
    import weaviate.classes as wvc

    from deeplens.schema.models import ImageRecord
    from deeplens.schema.weaviate import IMAGE_COLLECTION, image_vectors, properties_of

    vectors = image_vectors("", mode="precomputed")
    for vector in vectors:
        vector.vectorIndexConfig = wvc.config.Configure.VectorIndex.none().model_copy(
            update={"distance": vector.vectorIndexConfig.distance})
    client.collections.create(IMAGE_COLLECTION, properties=properties_of(ImageRecord), vector_config=vectors)


def old_grouping(ref: str):
    """connectors/queries/grouping.py as of `ref` (before candidates were found in memory), loaded
    as a module: the old method, run against the same backend."""
    import types

    source = subprocess.run(["git", "show", f"{ref}:connectors/queries/grouping.py"], capture_output=True,
                            text=True, check=True, cwd=Path(__file__).parent).stdout
    module = sys.modules["old_grouping"] = types.ModuleType("old_grouping")  # dataclasses look it up
    exec(compile(source, f"{ref}:connectors/queries/grouping.py", "exec"), module.__dict__)
    return module


class Phases:
    """Wall and CPU seconds (this process) of the phases of one near_duplicates run, from its progress
    callbacks and from wrappers around the in-memory candidate steps."""

    def __init__(self, grouping):
        self.marks: list[tuple[str, float, float]] = [("start", time.perf_counter(), time.process_time())]
        self.grouping = grouping
        self.wrapped = {}
        for name in ("hash_matches", "semantic_candidates"):
            if hasattr(grouping, name):
                self.wrapped[name] = original = getattr(grouping, name)
                setattr(grouping, name, self._timed(name, original))

    def _timed(self, name, function):
        def run(*args, **kwargs):
            self.mark(f"before {name}")
            try:
                return function(*args, **kwargs)
            finally:
                self.mark(name)
        return run

    def mark(self, name: str) -> None:
        self.marks.append((name, time.perf_counter(), time.process_time()))

    def restore(self) -> None:
        for name, function in self.wrapped.items():
            setattr(self.grouping, name, function)

    def on_total(self, total: int) -> None:
        if not any(name == "export" for name, *_ in self.marks):
            self.mark("export")

    def split(self) -> dict[str, tuple[float, float]]:
        """phase -> (wall s, CPU s of this process)."""
        out = {}
        for (_, wall0, cpu0), (name, wall1, cpu1) in zip(self.marks, self.marks[1:]):
            if not name.startswith("before"):
                out[name] = (wall1 - wall0, cpu1 - cpu0)
        return out


def agreement(old, new) -> dict:
    def grouped(result):
        return {frozenset(m.uri for m in g.members) for g in result.groups}

    def co_grouped(result):
        return {frozenset((a.uri, b.uri)) for g in result.groups for i, a in enumerate(g.members) for b in g.members[i + 1:]}

    def candidates(result):  # semantic candidates that were not grouped: rejected or not verifiable
        return {frozenset((p.a.uri, p.b.uri)) for p in (*result.similar, *result.unverified)}

    out = {}
    for name, of in (("groups", grouped), ("grouped pairs", co_grouped), ("similar + unverified pairs", candidates)):
        a, b = of(old), of(new)
        out[name] = {"both": len(a & b), "only old": len(a - b), "only new": len(b - a)}
    return out


def run_near(grouping, backend, modules, pids: dict[str, int], max_semantic_distance: float) -> tuple[object, dict]:
    calls = {"thumbnails": 0, "phash_neighbours": 0, "semantic_neighbours": 0}
    originals = {name: getattr(backend, name) for name in calls}

    def counted(name):
        def call(*args, **kwargs):
            calls[name] += 1
            return originals[name](*args, **kwargs)
        return call

    for name in calls:
        setattr(backend, name, counted(name))
    phases = Phases(grouping)
    try:
        with CpuMeter(pids) as meter:
            result = grouping.near_duplicates(backend, modules, max_semantic_distance=max_semantic_distance,
                                              on_total=phases.on_total)
        phases.mark("verification and grouping")
    finally:
        phases.restore()
        for name in calls:
            delattr(backend, name)
    return result, {"cpu": meter.summary(), "phases": phases.split(), "calls": calls, "groups": len(result.groups),
                    "similar": len(result.similar), "unverified": len(result.unverified)}


def measure(root: Path, size: int, args) -> dict:
    stack = stack_in(root, root / str(size))
    stack("up")
    try:
        client, backend, modules = connect_to(stack)
        pids = stack_pids(root / str(size)) | {"benchmark": os.getpid()}
        totals = backend.location_totals()
        images = sum(count for count, _ in totals.values())
        row: dict = {"images": images, "real": totals.get(REAL_LOCATION, (0, 0))[0]}
        if args.search:
            row["search"] = time_search(root / "photos", backend, modules, pids, args.search)
            log(f"{size}: search {row['search']}")
        if not args.skip_grouping:
            compare_methods(row, size, backend, modules, pids, args)
        row["load"] = machine_load()
        row["rss"] = {name: proc_status(pid).get("VmHWM", float("nan")) for name, pid in pids.items()}
        row["weaviate_disk_mb"] = disk_mb(root / str(size) / "weaviate")  # Settings.weaviate_data_path
        client.close()
        modules.close()
        return row
    finally:
        stack("down")


def compare_methods(row: dict, size: int, backend, modules, pids: dict[str, int], args) -> None:
    """`duplicates --near` by the new method, and by the old one too up to --old-max, into row."""
    from deeplens.connectors.queries import grouping

    log(f"{size}: {row['images']} images; new method")
    # Both methods at today's candidate radius: the comparison is of the candidate search.
    radius = grouping.DEFAULT_MAX_SEMANTIC_DISTANCE
    new, row["new"] = run_near(grouping, backend, modules, pids, radius)
    log(f"{size}: new {row['new']}")
    if size <= args.old_max:
        old, row["old"] = run_near(old_grouping(args.old_ref), backend, modules, pids, radius)
        log(f"{size}: old {row['old']}")
        row["agreement"] = agreement(old, new)
        log(f"{size}: agreement {row['agreement']}")


def time_search(photos: Path, backend, modules, pids: dict[str, int], queries: int) -> dict:
    """Latency of `search --image` and `search --image --near-dup` (connectors.queries.search, as the
    CLI calls it), one query at a time, on real photos of the collection picked at random. Needs the
    collection's vector indexes."""
    from deeplens.connectors.queries.search import search_image

    files = sorted(photos.glob("*.jpg"))
    rng = random.Random(1)
    picked = [files[rng.randrange(len(files))] for _ in range(queries)]
    inputs = [file.read_bytes() for file in picked]
    out = {}
    for name, near_dup, score in (("search --image", False, "distance"),
                                  ("search --image --near-dup", True, "hamming_distance")):
        with CpuMeter(pids) as meter:
            out[name] = pct(timed(lambda data: search_image(backend, modules, data, near_dup=near_dup), inputs))
        out[name]["cpu"] = meter.summary()
        # Untimed, that the answers are answers: each query photo is in the collection, so its own
        # path should be among the 10 results (byte copies tie with it at distance 0).
        answers = [search_image(backend, modules, data, near_dup=near_dup) for data in inputs]
        missed = sorted({file.name for file, hits in zip(picked, answers) if all(hit["path"] != file.name for hit in hits)})
        out[name]["self_in_top10"] = sum(file.name not in missed for file in picked)
        out[name]["missed"] = missed
        out[name]["first_at_distance_0"] = sum(bool(hits) and hits[0][score] <= 1e-3 for hits in answers)
    return out


def in_memory(size: int, dims: int) -> dict:
    """The in-memory candidate steps alone on SYNTHETIC data: uniform random pHashes with 7 random
    rotations/mirrors each, 5% near copies (1..8 bits flipped), and (dims > 0) random unit
    embeddings with the near copies nudged as SyntheticMaker does."""
    import numpy as np

    from deeplens.connectors.queries import candidates
    from deeplens.connectors.queries.grouping import NEIGHBOURS, SEMANTIC_CANDIDATES

    rng = np.random.default_rng(size)
    hashes = rng.integers(0, 2**63, size=size, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    copies = rng.choice(size, size // 20, replace=False)
    flips = np.zeros(len(copies), dtype=np.uint64)
    for bit in range(8):
        flips |= (rng.random(len(copies)) < 0.5).astype(np.uint64) << np.uint64(rng.integers(64))
    hashes[copies] = hashes[rng.integers(size, size=len(copies))] ^ flips
    variants = rng.integers(0, 2**63, size=7 * size, dtype=np.int64).astype(np.uint64)
    owners = np.repeat(np.arange(size), 7)
    out = {"size": size}
    for name, step in (("pHash pairs", lambda: candidates.nearest_phash_matches(hashes, 8, NEIGHBOURS)),
                       ("turned pairs", lambda: candidates.turned_pairs(hashes, variants, owners, 8))):
        wall, cpu = time.perf_counter(), time.process_time()
        found = step()
        out[name] = (time.perf_counter() - wall, time.process_time() - cpu, len(found[0]))
        log(f"in memory {size}: {name} {out[name]}")
    if dims:
        vectors = np.empty((size, dims), dtype=np.float32)
        for start in range(0, size, 65536):
            block = rng.standard_normal((min(65536, size - start), dims), dtype=np.float32)
            vectors[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        nudged = vectors[copies[:len(copies) // 2]] + 0.3 * rng.standard_normal((len(copies) // 2, dims), dtype=np.float32) / dims ** 0.5
        vectors[copies[len(copies) // 2:len(copies) // 2 * 2]] = nudged / np.linalg.norm(nudged, axis=1, keepdims=True)
        wall, cpu = time.perf_counter(), time.process_time()
        found = candidates.semantic_neighbours(vectors, 0.16, np.full(size, SEMANTIC_CANDIDATES))
        out["semantic neighbours"] = (time.perf_counter() - wall, time.process_time() - cpu, len(found[0]))
        log(f"in memory {size}: semantic {out['semantic neighbours']}")
    out["rss"] = proc_status(os.getpid()).get("VmHWM", float("nan"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="total images per collection, ascending")
    parser.add_argument("--real", type=int, default=300, help="real JPEGs scanned with `deeplens scan`")
    parser.add_argument("--keep", type=Path, help="build the collections here once and reuse them")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--skip-vector-index", action="store_true",
                        help="build without Weaviate's vector indexes (create_unindexed), "
                             "for `duplicates --near` at 1M")
    parser.add_argument("--vectors", choices=("random", "clustered"), default="random",
                        help="synthetic `semantic` vectors: random (HNSW's worst case) or clustered like image "
                             "embeddings (SyntheticMaker); a resumed build needs the same")
    parser.add_argument("--search", type=int, default=0, metavar="N",
                        help="time N search --image and N --near-dup queries (collections with vector indexes)")
    parser.add_argument("--skip-grouping", action="store_true", help="leave duplicates --near out (with --search)")
    parser.add_argument("--old-max", type=int, default=10_000, help="largest size at which the old method runs too")
    parser.add_argument("--old-ref", default=OLD_REF, help="git commit of the old method")
    parser.add_argument("--memory-sizes", default="100000,1000000", help="sizes of the in-memory steps alone (0: none)")
    parser.add_argument("--memory-dims", type=int, default=1280, help="embedding dims there")
    parser.add_argument("--semantic-max", type=int, default=100_000,
                        help="largest of those sizes with the semantic step (1M x 1280-d: 5 GB, ~5 CPU-min)")
    parser.add_argument("--quick", action="store_true", help="2000 images, 60 real, in memory 100k (make bench-quick)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.real, args.old_max, args.memory_sizes, args.semantic_max = "2000", 60, 2000, "100000", 10_000
    sizes = sorted(int(s) for s in args.sizes.split(",") if int(s))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deeplens-grouping-scale-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        missing = [size for size in sizes if not (root / str(size)).exists()]
        if missing:
            build(root, missing, args.real, args.skip_vector_index, args.vectors == "clustered")
        if args.build_only:
            return
        rows = {size: measure(root, size, args) for size in sizes}
        builds = json.loads((root / "build.json").read_text()) if (root / "build.json").exists() else {}
    memory = [in_memory(size, args.memory_dims if size <= args.semantic_max else 0)
              for size in (int(s) for s in args.memory_sizes.split(",")) if size]
    print_report(rows, builds, memory, time.perf_counter() - started)


def print_report(rows: dict[int, dict], builds: dict[str, dict], memory: list[dict], total_s: float) -> None:
    print(f"\n### duplicates --near at scale\n\nMachine: {platform.node()}, {os.cpu_count()} cores, "
          f"{platform.machine()}; whole run {total_s / 60:.1f} min. Collections: REAL scanned JPEGs plus "
          "SYNTHETIC objects (`semantic` vectors as the collections table says, random pHashes, ~3% exact and ~5% "
          "near copies, no thumbnails).\n")
    if any("new" in row for row in rows.values()):
        print("| | method | images (real) | wall s | export | pHash matches | semantic candidates | verification + grouping "
              "| per-image queries | CPU s: weaviate / modules / benchmark | groups | load 1 min; CPU pressure avg60 "
              "| peak RSS MB weaviate / benchmark |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, row in rows.items():
        for method in ("old", "new"):
            if method not in row:
                continue
            r = row[method]
            p = r["phases"]

            def phase(name):
                return f"{p[name][0]:.1f} ({p[name][1]:.1f} CPU)" if name in p else "-"

            queries = (r["calls"]["phash_neighbours"] + r["calls"]["semantic_neighbours"]) / row["images"]
            cpu = r["cpu"]
            print(f"| {size:,} | {method} | {row['images']:,} ({row['real']}) | {cpu['wall_s']:.0f} | {phase('export')} "
                  f"| {phase('hash_matches')} | {phase('semantic_candidates')} | {phase('verification and grouping')} "
                  f"| {queries:.2f} | {cpu.get('weaviate_cpu_s', 0):.0f} / {cpu.get('modules_cpu_s', 0):.0f} / "
                  f"{cpu.get('benchmark_cpu_s', 0):.0f} | {r['groups']:,} | {row['load']['loadavg1']:.1f}; "
                  f"{row['load'].get('cpu_pressure_avg60', float('nan')):.0f}% | {row['rss'].get('weaviate', float('nan')):.0f} / "
                  f"{row['rss'].get('benchmark', float('nan')):.0f} |")
    print("\nThe collections: synthetic inserts up to each size (insert_many, 3 requests of 500 in flight), "
          "and Weaviate's data dir on disk:\n")
    print("| images | vector indexes | inserted | objects/s | CPU ms per object: weaviate / benchmark "
          "| load 1 min; CPU pressure avg60 at the end | finished | Weaviate disk MB |")
    print("|---:|---|---:|---:|---:|---:|---|---:|")
    for size, row in rows.items():
        b = builds.get(str(size))
        if b:
            per = {name: 1000 * b.get(f"{name}_cpu_s", 0) / max(b["inserted"], 1) for name in ("weaviate", "benchmark")}
            load = b["load"]
            print(f"| {size:,} | {b['vector_indexes']}, {b.get('vectors', 'random')} vectors | {b['inserted']:,} | {b['inserted'] / b['wall_s']:.0f} "
                  f"| {per['weaviate']:.1f} / {per['benchmark']:.1f} | {load['loadavg1']:.1f}; "
                  f"{load.get('cpu_pressure_avg60', float('nan')):.0f}% | {b['finished']} "
                  f"| {row['weaviate_disk_mb']:,.0f} |")
        else:
            print(f"| {size:,} | (built before build.json) | | | | | | {row['weaviate_disk_mb']:,.0f} |")
    searched = {size: row["search"] for size, row in rows.items() if "search" in row}
    if searched:
        print("\nSearch latency, one query at a time (ms; real photos as queries), CPU s of the timed queries:\n")
        print("| images | query | n | p50 | p95 | p99 | CPU s: weaviate / modules / benchmark "
              "| query's own file in the 10 results | first result at distance 0 |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for size, kinds in searched.items():
            for name, t in kinds.items():
                cpu = t["cpu"]
                print(f"| {size:,} | {name} | {t['n']} | {t['p50']:.1f} | **{t['p95']:.1f}** | {t['p99']:.1f} "
                      f"| {cpu.get('weaviate_cpu_s', 0):.1f} / {cpu.get('modules_cpu_s', 0):.1f} / "
                      f"{cpu.get('benchmark_cpu_s', 0):.1f} | {t['self_in_top10']} | {t['first_at_distance_0']} |")
        for size, kinds in searched.items():
            for name, t in kinds.items():
                if t["missed"]:
                    print(f"\n{size:,}, {name}: not among the results of their own query: {', '.join(t['missed'])}")
    for size, row in rows.items():
        if "agreement" in row:
            print(f"\nAgreement at {size:,} images, old (one pHash and one semantic query per image) vs new (in memory):\n")
            print("| | both | only old | only new |\n|---|---:|---:|---:|")
            for name, counts in row["agreement"].items():
                print(f"| {name} | {counts['both']:,} | {counts['only old']:,} | {counts['only new']:,} |")
    if memory:
        print("\nIn-memory steps alone on SYNTHETIC data (uniform random pHashes, random unit embeddings); "
              "wall s (CPU s of this process), pairs found:\n")
        print("| images | pHash pairs (<= 8 bits, 50 per image) | turned pairs (7 variants each) | semantic neighbours "
              "| peak RSS MB |\n|---:|---:|---:|---:|---:|")
        for m in memory:
            cells = [f"{m[k][0]:.0f} ({m[k][1]:.0f}), {m[k][2]:,}" if k in m else "not run"
                     for k in ("pHash pairs", "turned pairs", "semantic neighbours")]
            print(f"| {m['size']:,} | " + " | ".join(cells) + f" | {m['rss']:.0f} |")


if __name__ == "__main__":
    main()
