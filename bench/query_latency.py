"""Query latency and scale: search and duplicate queries at 10k and 100k images.

Starts a private embedded stack (temp data dir, free ports), applies the schema, scans a few hundred
REAL JPEGs with `deeplens scan` (thumbnails, vectors from the module server), then tops the collection
up to each size with SYNTHETIC objects inserted with their own vectors (random unit `semantic`
vectors, random 0/1 `phash` vectors with matching `phash` / `phash_dihedral` properties, random
sizes and sha256s, some exact-duplicate groups and some near-duplicate clusters). Synthetic objects
have no thumbnail; they exist to give the vector indexes and aggregations their size. The output
flags them.

At every size it measures, sequentially from one client (latency, not throughput):
  search --image             queries.search.search_image (thumbnail + module call + nearImage)
  search --image --near-dup  queries.search.search_image(near_dup=True) (/v1/features + 8 nearVector)
  search --text              queries.search.search_text (clip profile only)
  duplicates (exact)         queries.grouping.exact_groups
  duplicates --near          queries.grouping.near_groups: the full run at sizes <= --near-full-max,
                             above that a bounded sample of the same per-image queries, extrapolated
and the split of `search --image` into its parts, plus peak RSS (VmHWM) of Weaviate, the module
server and this process.

    .venv/bin/python -m bench.query_latency                                   # 10k and 100k, offline profile
    .venv/bin/python -m bench.query_latency --quick                           # 2000 images (make bench-quick)
    .venv/bin/python -m bench.query_latency --profile clip --random-weights   # adds search --text
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import weaviate.classes as wvc
from weaviate.classes.query import MetadataQuery

from bench.procstats import cpu_seconds, proc_status, stack_pids
from deeplens.config import Settings
from deeplens.connectors.modules_client import ModulesClient
from deeplens.connectors.queries import grouping as dup
from deeplens.connectors.queries.backend import RESULT_FIELDS
from deeplens.connectors.queries.weaviate import WeaviateBackend
from deeplens.connectors.extract import extract
from deeplens.connectors.queries.search import search_image, search_text
from deeplens.connectors.weaviate_client import connect
from deeplens.modules.phash import BITS, hex_to_vector
from deeplens.modules.profiles import PROFILES
from deeplens.processes import free_port
from deeplens.samples import TRANSFORMS, jpeg_bytes, sample_photos, synthetic_image
from deeplens.schema.models import DEEPLENS_NAMESPACE
from deeplens.schema.weaviate import IMAGE_COLLECTION, PHASH_VECTOR, SEMANTIC_VECTOR, apply_schema

SYNTHETIC_LOCATION = "synthetic"
TEXT_QUERIES = ["a photo of a cat", "an astronaut", "coffee cup on a table", "a rocket launch", "coins", "the moon"]
NEAR_WORKERS = 8  # near_groups' default


# ---------------------------------------------------------------------------------------------- stack


def deeplens(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "deeplens", *args], env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"deeplens {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


class CpuMeter:
    """CPU seconds each process used during a `with` block, and the wall time."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids

    def __enter__(self):
        self.start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.used = {name: cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}

    def summary(self) -> dict:
        return {"wall_s": self.wall, **{f"{name}_cpu_s": used for name, used in self.used.items()}}


def module_images(modules: httpx.Client) -> dict[str, float]:
    """deeplens_images_total by route, from the module server's /metrics."""
    out = {}
    for line in modules.get("/metrics").text.splitlines():
        if line.startswith("deeplens_images_total{"):
            route = line.split('route="', 1)[1].split('"', 1)[0]
            out[route] = float(line.rsplit(" ", 1)[1])
    return out


# ---------------------------------------------------------------------------------------------- data


def write_real_images(folder: Path, count: int) -> list[Path]:
    """Real JPEGs for `deeplens scan`: the sample photos, a few edits of them (near-duplicates), three
    byte-identical copies (exact duplicates), and synthetic_image() photos-like JPEGs up to `count`."""
    folder.mkdir(parents=True)
    photos = sample_photos()
    names = sorted(photos)
    files = []
    for name in names:
        path = folder / f"{name}.jpg"
        path.write_bytes(jpeg_bytes(photos[name]))
        files.append(path)
    for name, (edit, transform) in zip(names[:10], list(TRANSFORMS.items())):
        path = folder / f"{name}-{edit}.jpg"
        path.write_bytes(jpeg_bytes(transform(photos[name])))
        files.append(path)
    for name in names[:3]:
        path = folder / f"{name} copy.jpg"
        path.write_bytes((folder / f"{name}.jpg").read_bytes())
        files.append(path)
    seed = 0
    while len(files) < count:
        path = folder / f"synthetic-photo-{seed:05}.jpg"
        path.write_bytes(jpeg_bytes(synthetic_image(seed, (1024, 768))))
        files.append(path)
        seed += 1
    return files[:count] if len(files) > count else files


def _random_hex(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(0, 2**63, dtype=np.int64)) * 2 + int(rng.integers(0, 2)):016x}"


def _flip(hex_hash: str, rng: np.random.Generator, bits: int) -> str:
    mask = 0
    for bit in rng.choice(BITS, size=bits, replace=False):
        mask |= 1 << int(bit)
    return f"{int(hex_hash, 16) ^ mask:016x}"


class SyntheticMaker:
    """Objects with self-provided vectors. ~3% are exact copies of an earlier object (same sha256 and
    size), ~5% near copies (1..8 pHash bits flipped, semantic vector nudged to cosine distance < 0.1).

    `semantic` vectors are random unit vectors (no cluster structure: HNSW's worst case), or with
    `clustered` drawn around CENTRES fixed random centres, each ~0.15 cosine distance from its centre
    and ~0.28 from the others of its cluster, like image embeddings."""

    CENTRES = 500

    def __init__(self, dim: int, seed: int = 7, clustered: bool = False):
        self.dim = dim
        self.rng = np.random.default_rng(seed)
        self.made: list[dict] = []  # what a copy needs of its original (bounded, see below)
        self.count = 0
        self.centres = None
        if clustered:  # the same centres for every maker, so that resumed builds add to the same clusters
            centres = np.random.default_rng(99).standard_normal((self.CENTRES, dim)).astype(np.float32)
            self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)

    def _unit(self, n: int) -> np.ndarray:
        if self.centres is None:
            v = self.rng.standard_normal((n, self.dim)).astype(np.float32)
        else:
            noise = self.rng.standard_normal((n, self.dim)).astype(np.float32) / self.dim ** 0.5
            v = self.centres[self.rng.integers(0, self.CENTRES, n)] + 0.6 * noise
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def chunk(self, n: int) -> list[wvc.data.DataObject]:
        semantic = self._unit(n)
        objects = []
        now = dt.datetime.now(dt.timezone.utc)
        for i in range(n):
            index = self.count
            self.count += 1
            path = f"bucket/{index // 1000:03}/img{index:07}.jpg"
            roll = self.rng.random()
            original = self.made[int(self.rng.integers(len(self.made)))] if self.made and roll < 0.08 else None
            if original is not None and roll < 0.03:  # exact copy
                sha, size, variants, vec = original["sha"], original["size"], original["variants"], original["vec"]
            elif original is not None:  # near copy
                flips = int(self.rng.integers(1, 9))
                variants = [_flip(v, self.rng, flips) for v in original["variants"]]
                noise = self._unit(1)[0] * 0.3
                vec = original["vec"] + noise
                vec = vec / np.linalg.norm(vec)
                sha = hashlib.sha256(f"synthetic{index}".encode()).hexdigest()
                size = int(original["size"] * self.rng.uniform(0.5, 1.2))
            else:
                variants = [_random_hex(self.rng) for _ in range(8)]
                vec = semantic[i]
                sha = hashlib.sha256(f"synthetic{index}".encode()).hexdigest()
                size = int(self.rng.integers(50_000, 8_000_000))
            if len(self.made) < 20_000:
                self.made.append({"sha": sha, "size": size, "variants": variants, "vec": vec})
            width, height = random.Random(index).choice([(4032, 3024), (1920, 1080), (1024, 768), (3000, 2000)])
            properties = {
                "location": SYNTHETIC_LOCATION,
                "uri": f"synthetic://{path}",
                "path": path,
                "folder": path.rsplit("/", 1)[0],
                "filename": path.rsplit("/", 1)[1],
                "extension": "jpg",
                "size_bytes": size,
                "modified_at": now,
                "content_sha256": sha,
                "width": width,
                "height": height,
                "format": "JPEG",
                "phash": variants[0],
                "phash_dihedral": variants,
                "indexed_at": now,
                "scan_id": "synthetic",
            }
            objects.append(
                wvc.data.DataObject(
                    properties=properties,
                    uuid=uuidlib.uuid5(DEEPLENS_NAMESPACE, f"{SYNTHETIC_LOCATION}\0{path}"),
                    vector={SEMANTIC_VECTOR: vec.tolist(), PHASH_VECTOR: hex_to_vector(variants[0])},
                )
            )
        return objects


def insert_synthetic(collection, maker: SyntheticMaker, count: int, chunk: int = 500, parallel: int = 3) -> float:
    """insert_many (gRPC batch) in chunks, `parallel` requests in flight."""
    started = time.perf_counter()
    done = 0

    def send(objects):
        result = collection.data.insert_many(objects)
        if result.has_errors:
            first = next(iter(result.errors.values()))
            raise SystemExit(f"synthetic insert failed ({len(result.errors)} errors), e.g. {first.message}")
        return len(objects)

    with ThreadPoolExecutor(parallel) as pool:
        pending = []
        made = 0
        while made < count:
            n = min(chunk, count - made)
            pending.append(pool.submit(send, maker.chunk(n)))
            made += n
            while len(pending) > parallel * 2:
                done += pending.pop(0).result()
                print(f"  inserted {done}/{count} synthetic objects", file=sys.stderr, end="\r")
        for future in pending:
            done += future.result()
    print(f"  inserted {done}/{count} synthetic objects", file=sys.stderr)
    return time.perf_counter() - started


def machine_load() -> dict:
    """Load average and CPU pressure (PSI 'some' avg60: share of time runnable tasks waited for a CPU)."""
    out = {"loadavg1": os.getloadavg()[0]}
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        out["cpu_pressure_avg60"] = float(some.split("avg60=")[1].split()[0])
    except (FileNotFoundError, IndexError):
        pass
    return out


# ---------------------------------------------------------------------------------------------- timing


def pct(values: list[float]) -> dict[str, float]:
    arr = np.array(values) * 1000
    return {"n": len(values), "p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)),
            "p99": float(np.percentile(arr, 99)), "mean": float(arr.mean())}


def timed(run, inputs: list, warmup: int = 3) -> list[float]:
    for item in inputs[:warmup]:
        run(item)
    out = []
    for item in inputs:
        started = time.perf_counter()
        run(item)
        out.append(time.perf_counter() - started)
    return out


def neighbours_sample(backend: WeaviateBackend, rows: list[tuple[str, str]], workers: int) -> tuple[float, int]:
    """The per-image queries of near_groups (same backend calls, same parameters), for a sample of
    images; returns (seconds, queries sent)."""
    queries = [0]

    def one(row):
        uuid, phash = row  # as near_groups: turned copies come from hash bands, in memory
        backend.phash_neighbours(phash, dup.DEFAULT_MAX_DISTANCE, dup.NEIGHBOURS, None)
        backend.semantic_neighbours(uuid, dup.DEFAULT_MAX_SEMANTIC_DISTANCE, dup.NEIGHBOURS, None)
        queries[0] += 2

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, rows))
    return time.perf_counter() - started, queries[0]


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="total images per step, ascending")
    parser.add_argument("--real", type=int, default=300, help="real JPEGs scanned with `deeplens scan`")
    parser.add_argument("--queries", type=int, default=100, help="timed queries per search kind and size")
    parser.add_argument("--near-full-max", type=int, default=10_000,
                        help="largest size at which near_groups runs in full (above: sample + extrapolation)")
    parser.add_argument("--near-sample", type=int, default=300, help="images in the near-duplicate sample")
    parser.add_argument("--profile", choices=list(PROFILES), default="offline")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--quick", action="store_true", help="2000 images, 60 real, 30 queries (make bench-quick)")
    parser.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.real, args.queries, args.near_sample = "2000", 60, 30, 100
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if sizes[0] < args.real:
        raise SystemExit("--real must not exceed the smallest size")
    bench_started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="deeplens-latency-") as tmp:
        root = Path(tmp)
        settings = Settings(
            data_dir=root / "data",
            weaviate_url=f"http://127.0.0.1:{free_port()}",
            weaviate_grpc_port=free_port(),
            modules_url=f"http://127.0.0.1:{free_port()}",
            profile=args.profile,
            random_weights=args.random_weights,
        )
        env = {
            **os.environ,
            "DEEPLENS_DATA_DIR": str(settings.data_dir),
            "DEEPLENS_WEAVIATE_URL": settings.weaviate_url,
            "DEEPLENS_WEAVIATE_GRPC_PORT": str(settings.weaviate_grpc_port),
            "DEEPLENS_MODULES_URL": settings.modules_url,
            "DEEPLENS_PROFILE": args.profile,
            "DEEPLENS_RANDOM_WEIGHTS": "true" if args.random_weights else "false",
        }
        photos = root / "photos"
        files = write_real_images(photos, args.real)
        print(f"wrote {len(files)} real JPEGs", file=sys.stderr)
        started = time.perf_counter()
        for attempt in range(3):
            # Free ports are picked before the servers bind them; on a busy machine another process can
            # take one in between ("address already in use"). Start over with fresh ports then.
            result = subprocess.run([sys.executable, "-m", "deeplens", "up"], env=env, capture_output=True, text=True)
            if not result.returncode:
                break
            if attempt == 2 or "already in use" not in result.stderr + result.stdout:
                raise SystemExit(f"deeplens up failed:\n{result.stderr}")
            print("port taken during start-up; retrying with other ports", file=sys.stderr)
            deeplens(env, "down")
            shutil.rmtree(settings.data_dir, ignore_errors=True)
            settings = settings.model_copy(update={
                "weaviate_url": f"http://127.0.0.1:{free_port()}", "weaviate_grpc_port": free_port(),
                "modules_url": f"http://127.0.0.1:{free_port()}"})
            env.update(DEEPLENS_WEAVIATE_URL=settings.weaviate_url,
                       DEEPLENS_WEAVIATE_GRPC_PORT=str(settings.weaviate_grpc_port),
                       DEEPLENS_MODULES_URL=settings.modules_url)
        startup_s = time.perf_counter() - started
        report: dict = {"sizes": {}}
        try:
            run(args, settings, env, photos, files, sizes, report)
            report["startup_s"] = startup_s
        except BaseException:
            if report["sizes"]:  # print what was measured before the failure
                report["startup_s"] = startup_s
                report["total_s"] = time.perf_counter() - bench_started
                print_report(args, report)
            raise
        finally:
            deeplens(env, "down")
    report["total_s"] = time.perf_counter() - bench_started
    print_report(args, report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def run(args, settings: Settings, env: dict, photos: Path, files: list[Path], sizes: list[int], report: dict) -> None:
    client = connect(settings)
    modules_client = ModulesClient(settings.modules_url)
    backend = WeaviateBackend(client, modules_client)
    pids = stack_pids(settings.data_dir)
    meter_pids = {**pids, "benchmark": os.getpid()}
    report["pids"] = pids
    try:
        apply_schema(client, settings.modules_url)
        collection = client.collections.use(IMAGE_COLLECTION)
        deeplens(env, "storage", "add", "real", str(photos))
        started = time.perf_counter()
        [summary] = json.loads(deeplens(env, "scan", "real", "--json"))
        report["scan"] = {"images": summary["new"], "errors": summary["errors"], "seconds": time.perf_counter() - started}
        print(f"scanned {summary['new']} real images ({summary['errors']} errors)", file=sys.stderr)

        probe = next(iter(collection.iterator(include_vector=True, return_properties=["location"])))
        dim = len(probe.vector[SEMANTIC_VECTOR])
        report["semantic_dim"] = dim
        maker = SyntheticMaker(dim)
        modules = httpx.Client(base_url=settings.modules_url, timeout=60)
        query_bytes = [f.read_bytes() for f in files]
        rng = random.Random(1)
        queries = [query_bytes[rng.randrange(len(query_bytes))] for _ in range(args.queries)]
        big = jpeg_bytes(synthetic_image(12345, (4032, 3024)))  # a 12 MP phone photo
        for size in sizes:
            have = collection.aggregate.over_all(total_count=True).total_count
            vectorized_before = module_images(modules)
            with CpuMeter(meter_pids) as insert_cpu:
                insert_s = insert_synthetic(collection, maker, size - have) if size > have else 0.0
            vectorized_after = module_images(modules)
            total = collection.aggregate.over_all(total_count=True).total_count
            print(f"size {total}: measuring", file=sys.stderr)
            row: dict = {"images": total, "real": summary["new"], "synthetic": total - summary["new"],
                         "insert_s": insert_s, "insert_per_s": (size - have) / insert_s if insert_s else None,
                         "insert_cpu": insert_cpu.summary(),
                         "insert_module_images": sum(vectorized_after.values()) - sum(vectorized_before.values())}

            # search --image (semantic), the whole connector path
            with CpuMeter(meter_pids) as search_cpu:
                row["search_image"] = pct(timed(lambda d: search_image(backend, modules_client, d), queries))
            row["search_image_cpu"] = search_cpu.summary()
            row["search_image_12mp"] = pct(timed(lambda d: search_image(backend, modules_client, d),
                                                 [big] * min(20, args.queries)))
            # ... and its parts, on the same queries
            thumbs = [extract(d).thumbnail for d in queries]
            row["part_thumbnail"] = pct(timed(extract, queries))
            row["part_thumbnail_12mp"] = pct(timed(extract, [big] * min(20, args.queries)))
            vectors = []

            def module_call(thumb):
                r = modules.post("/semantic/vectorize", json={"images": [thumb]})
                r.raise_for_status()
                vectors.append(r.json()["imageVectors"][0])

            row["part_module_semantic"] = pct(timed(module_call, thumbs))
            vectors = vectors[-len(thumbs):]
            row["part_near_vector_semantic"] = pct(timed(
                lambda v: collection.query.near_vector(
                    near_vector=v, target_vector=SEMANTIC_VECTOR, limit=10,
                    return_metadata=MetadataQuery(distance=True), return_properties=RESULT_FIELDS),
                vectors))
            row["part_near_image"] = pct(timed(
                lambda t: collection.query.near_image(
                    near_image=t, target_vector=SEMANTIC_VECTOR, limit=10,
                    return_metadata=MetadataQuery(distance=True), return_properties=RESULT_FIELDS),
                thumbs))

            # search --image --near-dup
            row["search_near_dup"] = pct(timed(lambda d: search_image(backend, modules_client, d, near_dup=True), queries))
            variants = []

            def features_call(thumb):
                r = modules.post("/v1/features", json={"images": [{"data": thumb}], "features": ["dihedral"]})
                r.raise_for_status()
                variants.append(list(dict.fromkeys(r.json()["results"][0]["phash_dihedral"].values())))

            row["part_features"] = pct(timed(features_call, thumbs))
            variants = variants[-len(thumbs):]
            flat = [v for vs in variants for v in vs]
            row["variants_per_query"] = len(flat) / len(variants)
            row["part_near_vector_phash"] = pct(timed(
                lambda h: collection.query.near_vector(
                    near_vector=hex_to_vector(h), target_vector=PHASH_VECTOR,
                    distance=dup.DEFAULT_MAX_DISTANCE, limit=10,
                    return_metadata=MetadataQuery(distance=True), return_properties=RESULT_FIELDS),
                flat))

            # search --text
            if args.profile == "clip":
                texts = [TEXT_QUERIES[i % len(TEXT_QUERIES)] + f" {i}" for i in range(args.queries)]
                row["search_text"] = pct(timed(lambda t: search_text(backend, t), texts))

            # duplicates (exact)
            exact_runs = []
            for _ in range(5 if total <= 20_000 else 3):
                started = time.perf_counter()
                try:
                    groups = dup.exact_groups(backend)
                except Exception as exc:  # noqa: BLE001 - a failing query is a result here
                    row["exact_error"] = f"{type(exc).__name__} after {time.perf_counter() - started:.0f} s: " + (
                        "DEADLINE_EXCEEDED" if "DEADLINE_EXCEEDED" in str(exc) else str(exc).splitlines()[0][:120])
                    break
                exact_runs.append(time.perf_counter() - started)
            if exact_runs:
                row["exact"] = pct(exact_runs)
                row["exact_groups"] = len(groups)

            # duplicates --near
            started = time.perf_counter()
            rows = [(uuid, p["phash"]) for uuid, p in backend.images(None) if p.get("phash")]
            row["near_iterate_s"] = time.perf_counter() - started
            sample = random.Random(size).sample(rows, min(args.near_sample, len(rows)))
            with CpuMeter(meter_pids) as near_cpu:
                seconds, sent = neighbours_sample(backend, sample, NEAR_WORKERS)
            row["near_sample_cpu"] = near_cpu.summary()
            row["near_sample"] = {"images": len(sample), "seconds": seconds, "queries": sent,
                                  "images_per_s": len(sample) / seconds, "queries_per_s": sent / seconds}
            row["near_estimate_s"] = row["near_iterate_s"] + len(rows) / (len(sample) / seconds)
            if total <= args.near_full_max:
                started = time.perf_counter()
                near = dup.near_groups(backend, modules_client)
                row["near_full_s"] = time.perf_counter() - started
                row["near_groups"] = len(near)
            row["load"] = machine_load()
            row["rss"] = {name: proc_status(pid) for name, pid in pids.items()}
            row["rss"]["benchmark"] = proc_status(os.getpid())
            report["sizes"][total] = row
            print(json.dumps({k: v for k, v in row.items() if not isinstance(v, dict)}), file=sys.stderr)
        modules.close()
    finally:
        modules_client.close()
        client.close()


def print_report(args, report: dict) -> None:
    rows = report["sizes"]
    sizes = list(rows)
    flag = " (random weights)" if args.random_weights else ""
    print(f"\n### Query latency, profile `{args.profile}`{flag}, semantic {report['semantic_dim']}-d\n")
    print(f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}; "
          f"{dt.date.today().isoformat()}; stack start {report['startup_s']:.0f} s, whole run "
          f"{report['total_s'] / 60:.1f} min.")
    first = rows[sizes[0]]
    print(f"Data: {first['real']} REAL images scanned with `deeplens scan` ({report['scan']['seconds']:.0f} s); "
          "the rest are SYNTHETIC objects with self-provided random vectors (no thumbnails), ~3% exact and "
          "~5% near copies.")
    print("Latency is one client, sequential queries, warm; ms. Query images: the real JPEGs "
          "(sample photos and 1024x768 photos-like JPEGs).\n")
    header = "| query | " + " | ".join(f"{rows[s]['images']:,} images p50 / p95 / p99" for s in sizes) + " |"
    print(header)
    print("|---|" + "---:|" * len(sizes))

    def line(label, key, sizes=sizes):
        cells = []
        for s in sizes:
            v = rows[s].get(key)
            if v:
                cells.append(f"{v['p50']:.1f} / {v['p95']:.1f} / {v['p99']:.1f}")
            else:
                cells.append(f"FAILED: {rows[s]['exact_error']}" if key == "exact" and "exact_error" in rows[s] else "n/a")
        print(f"| {label} | " + " | ".join(cells) + " |")

    line("`search --image` (search_image, semantic)", "search_image")
    line("`search --image`, 12 MP JPEG query", "search_image_12mp")
    line("`search --image --near-dup` (search_image near_dup)", "search_near_dup")
    if args.profile == "clip":
        line("`search --text` (search_text)" + (" (random weights)" if args.random_weights else ""), "search_text")
    else:
        print("| `search --text` | " + " | ".join("n/a: offline profile has no text model" for _ in sizes) + " |")
    line("`duplicates` exact (exact_groups), 5 runs (3 above 20k)", "exact")
    print()
    print("Parts of `search --image` (same queries, measured separately; ms p50 / p95 / p99):\n")
    print(header)
    print("|---|" + "---:|" * len(sizes))
    line("thumbnail (connectors.extract.extract)", "part_thumbnail")
    line("thumbnail, 12 MP JPEG", "part_thumbnail_12mp")
    line("module `/semantic/vectorize` of the thumbnail, from the client", "part_module_semantic")
    line("Weaviate nearImage (Weaviate calls the module + HNSW)", "part_near_image")
    line("Weaviate nearVector `semantic`, vector given (HNSW + properties)", "part_near_vector_semantic")
    line("module `/v1/features` dihedral (near-dup)", "part_features")
    line("Weaviate nearVector `phash`, one variant (near-dup)", "part_near_vector_phash")
    print("| distinct dihedral variants per near-dup query | " + " | ".join(
        f"{rows[s]['variants_per_query']:.1f}" for s in sizes) + " |")
    print()
    print("Duplicates and scale:\n")
    print("| | " + " | ".join(f"{rows[s]['images']:,} images" for s in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))

    def cell(label, fmt):
        print(f"| {label} | " + " | ".join(fmt(rows[s]) for s in sizes) + " |")

    cell("synthetic insert (objects/s, with vectors)", lambda r: f"{r['insert_per_s']:.0f}" if r["insert_per_s"] else "-")
    cell("exact: groups found", lambda r: f"{r['exact_groups']:,}" if "exact_groups" in r else f"FAILED: {r['exact_error']}")
    cell("near: iterate all objects (s)", lambda r: f"{r['near_iterate_s']:.1f}")
    cell("near: sample of per-image queries (images, queries/s)",
         lambda r: f"{r['near_sample']['images']}, {r['near_sample']['queries_per_s']:.0f}")
    cell("near: full near_groups (s), groups", lambda r: f"{r['near_full_s']:.0f}, {r['near_groups']:,}" if "near_full_s" in r else "not run")
    cell("near: EXTRAPOLATED near_groups from the sample (s)", lambda r: f"{r['near_estimate_s']:.0f} (~{r['near_estimate_s'] / 60:.1f} min)")
    def cpu(key):
        def fmt(r):
            c = r.get(key)
            if not c:
                return "-"
            return (f"{c['wall_s']:.1f} s wall: weaviate {c.get('weaviate_cpu_s', 0):.1f}, modules "
                    f"{c.get('modules_cpu_s', 0):.1f}, benchmark {c.get('benchmark_cpu_s', 0):.1f} CPU s")
        return fmt

    cell("CPU during synthetic insert", cpu("insert_cpu"))
    cell("module images vectorized during synthetic insert (expect 0)", lambda r: f"{r['insert_module_images']:.0f}")
    cell("CPU during `search --image` queries", cpu("search_image_cpu"))
    cell("CPU during near sample", cpu("near_sample_cpu"))
    cell("CPU per `search --image` query, all processes (ms)", lambda r: "%.0f" % (1000 * sum(
        v for k, v in r["search_image_cpu"].items() if k.endswith("_cpu_s")) / (r["search_image"]["n"] + 3)))
    cell("machine load at the end of the step (loadavg 1 min; CPU pressure avg60 %)",
         lambda r: f"{r['load']['loadavg1']:.1f}; {r['load'].get('cpu_pressure_avg60', float('nan')):.0f}%")
    for name in ("weaviate", "modules", "benchmark"):
        cell(f"peak RSS {name} (MB, VmHWM)", lambda r, n=name: f"{r['rss'].get(n, {}).get('VmHWM', float('nan')):.0f}")


if __name__ == "__main__":
    main()
