"""Near-duplicate accuracy on a second, independently made set with look-alike negatives.

    .venv/bin/python -m bench.neardup2            # full: 97 sources x 23 images + look-alikes (~2,360 images)
    .venv/bin/python -m bench.neardup2 --quick    # a few minutes: 20 sources (~500 images)

1. Writes the dataset (bench/neardup2/dataset.py: photos from PyPI wheels and drawn scenes, 22
   AugLy/OpenCV edits, look-alikes that are not copies) into `tune` and `test` folders.
2. Starts a private embedded stack with bench/neardup's PrivateStack (the real CLI, offline
   profile, temp data dir, free ports), adds both folders as storage locations and scans them.
3. DeepLens: `deeplens duplicates --near --json --location test` at the CLI's defaults (no
   threshold flags), so whatever grouping the CLI does today is what is measured. A sweep of
   thresholds around the defaults ON TEST (skip with --no-sweep) gives the best recall at
   precision >= 0.99: an oracle figure, labelled as such, not a tuned result. With --tune-grid,
   also the best --max-distance x --max-semantic-distance on `tune`, applied to `test` (24 more
   calls). Each call takes a minute or more at 1,200 images on 2 busy cores.
4. imagededup PHash and CNN (MobileNetV2 with the offline profile's weights): thresholds tuned on
   `tune` (best pairwise F1 over a grid), reported on `test` (skip with --no-imagededup).
5. Prints markdown: overall pairwise precision/recall/F1; recall per edit (with its issue-20 tier)
   and per parameter range of the edits the issue sets targets for; look-alikes joined to the
   source they resemble; false pairs by what they join; the look-alikes DeepLens grouped with
   their evidence; the tiers the CLI reported; the verification figures (inliers, inlier ratio,
   coverage) of the pairs it accepted and rejected, split by the truth.

Pairwise metrics as in bench/neardup (its score/group_pairs are reused): predicted pairs = every
pair inside a predicted group (imagededup: every pair it reports); true pairs = every pair inside a
ground-truth group (a source and its 22 copies). Look-alikes belong to no group, so every pair
with one is a false pair; "look-alike pairs" are those between a look-alike and its source's
group (or another look-alike of the same source).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from bench.neardup.run import PrivateStack, Score, group_pairs, imagededup_cnn_method, log, score, true_pairs
from bench.neardup2 import dataset
from bench.neardup2.dataset import EDIT_NAMES, LOOKALIKE_KINDS, Item
from bench.neardup2.edits import TIER

Pair = frozenset

# max_distance x max_semantic: the DeepLens grid on tune (--tune-grid). sweep: the points swept on
# test for the recall at precision 0.99, around the CLI's defaults (D bits, S cosine): bits
# {4, D, D + 2} x cosine {0, S/2, 3S/4, S, 5S/4}. Each point is one `duplicates --near` call: up
# to a minute at 1,200 images on 2 cores.
FULL = dict(max_distance=(6, 8, 10, 12), max_semantic=(0.0, 0.06, 0.08, 0.12, 0.16, 0.2),
            sweep_distance=lambda d: (4, d, d + 2), sweep_semantic=lambda s: (0.0, s / 2, 3 * s / 4, s, 5 * s / 4),
            phash=tuple(range(0, 21, 2)), cnn=(0.8, 0.84, 0.86, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98))
QUICK = dict(max_distance=(8, 12), max_semantic=(0.0, 0.08, 0.16),
             sweep_distance=lambda d: (d,), sweep_semantic=lambda s: (0.0, s / 2, 5 * s / 4),
             phash=(4, 8, 10, 12, 16), cnn=(0.86, 0.9, 0.94))
# Parameter ranges for the edits issue 20 sets recall targets for (rotations up to 5 degrees,
# borders up to 15%, centre crops to 80%).
BINS = {
    "rotate_small": ("degrees", lambda p: abs(p["degrees"]), ((2, 3), (3, 4), (4, 5.01)), "{:g}-{:g} deg"),
    "border": ("factor", lambda p: p["factor"] * 100, ((5, 8), (8, 12), (12, 15.01)), "{:g}-{:g}% each side"),
    "crop_centre": ("fraction", lambda p: p["fraction"] * 100, ((80, 85), (85, 90), (90, 95.01)), "{:g}-{:g}% kept"),
    "crop_offcentre": ("fraction", lambda p: p["fraction"] * 100, ((75, 80), (80, 85), (85, 90.01)), "{:g}-{:g}% kept"),
}


# ----------------------------------------------------------------------------------- DeepLens

class NearDuplicatesCLI:
    """`deeplens duplicates --near --json` on the private stack; keeps the whole answer."""

    def __init__(self, stack: PrivateStack):
        self.stack = stack
        self.include_similar = "--include-similar" in stack("duplicates", "--help")

    def __call__(self, location: str, max_distance: int | None = None, max_semantic: float | None = None) -> dict:
        args = ["duplicates", "--near", "--json", "--location", location]
        if max_distance is not None:
            args += ["--max-distance", str(max_distance)]
        if max_semantic is not None:
            args += ["--max-semantic-distance", str(max_semantic)]
        if self.include_similar:
            args.append("--include-similar")
        return json.loads(self.stack(*args))


def answer_groups(answer: dict) -> list[list[str]]:
    return [[Path(m["uri"]).name for m in group["members"]] for group in answer["groups"]]


def answer_tiers(answer: dict) -> dict[str, str]:
    """File -> the tier the CLI gave it, where it says (members without one are left out)."""
    return {Path(m["uri"]).name: m["tier"] for g in answer["groups"] for m in g["members"] if m.get("tier")}


def answer_pairs(answer: dict, key: str) -> set[Pair]:
    return {Pair((Path(p["a"]).name, Path(p["b"]).name)) for p in answer.get(key, [])}


# --------------------------------------------------------------------------------- imagededup

def imagededup_encodings(folder: Path) -> dict[str, dict]:
    from imagededup.methods import PHash

    phash = PHash(verbose=False)
    cnn = imagededup_cnn_method()
    return {"phash": (phash, phash.encode_images(image_dir=folder)),
            "cnn": (cnn, cnn.encode_images(image_dir=folder))}


def imagededup_pairs(method: str, encoded, threshold: float) -> set[Pair]:
    tool, encodings = encoded[method]
    if method == "phash":
        found = tool.find_duplicates(encoding_map=encodings, max_distance_threshold=int(threshold))
    else:
        found = tool.find_duplicates(encoding_map=encodings, min_similarity_threshold=float(threshold))
    return {Pair((a, b)) for a, dups in found.items() for b in dups}


# ------------------------------------------------------------------------------------ metrics

def lookalike_pairs(items: list[Item]) -> dict[str, set[Pair]]:
    """Per look-alike kind: the pairs between each look-alike and its source's group, and between
    look-alikes of the same source."""
    members: dict[str, list[str]] = defaultdict(list)
    looks: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        if item.cluster:
            members[item.cluster].append(item.file)
        elif item.lookalike_of:
            looks[item.lookalike_of].append(item)
    out: dict[str, set[Pair]] = defaultdict(set)
    for source, found in looks.items():
        for look in found:
            out[look.role] |= {Pair((look.file, m)) for m in members[source]}
            out[look.role] |= {Pair((look.file, other.file)) for other in found if other.file != look.file}
    return out


def lookalike_rows(predicted: set[Pair], items: list[Item]) -> dict[str, tuple[int, int, int, int, int]]:
    """Per kind: look-alikes, joined to their source's group, joined to anything, look-alike pairs
    predicted, look-alike pairs in all."""
    pairs = lookalike_pairs(items)
    in_any = {f for p in predicted for f in p}
    rows = {}
    for kind in LOOKALIKE_KINDS:
        looks = [i.file for i in items if i.role == kind]
        hit = pairs.get(kind, set()) & predicted
        joined = {f for p in hit for f in p} & set(looks)
        rows[kind] = (len(looks), len(joined), len(set(looks) & in_any), len(hit), len(pairs.get(kind, set())))
    return rows


def false_pair_kinds(predicted: set[Pair], items: list[Item]) -> Counter:
    """False pairs by what they join."""
    by_file = {i.file: i for i in items}
    look_pairs = set().union(*lookalike_pairs(items).values()) if items else set()
    unit = {}
    for i in items:
        if i.cluster:  # windows of one photo half share a prefix: nemo-left-0, nemo-left-3
            unit[i.cluster] = i.cluster.rsplit("-", 1)[0] if i.cluster.startswith(("nemo-", "department_store-")) else i.cluster
    out: Counter = Counter()
    for pair in predicted:
        a, b = (by_file[f] for f in sorted(pair))
        if a.cluster and a.cluster == b.cluster:
            continue
        if pair in look_pairs:
            out[f"look-alike ({(a if not a.cluster else b).role}) ~ the source it resembles"] += 1
        elif a.cluster and b.cluster and a.role == b.role and a.role != "original":
            out[f"copies of two sources made by the same edit ({a.role})"] += 1
        elif not a.cluster or not b.cluster:
            out["look-alike ~ another image"] += 1
        elif unit[a.cluster] == unit[b.cluster]:
            out["two sources cut from one photo half (disjoint windows)"] += 1
        elif a.family == b.family:
            out[f"two sources of one family ({a.family})"] += 1
        else:
            out["sources of different families"] += 1
    return out


def binned_recall(predicted: set[Pair], items: list[Item]) -> dict[str, list[tuple[str, float, int]]]:
    originals = {i.cluster: i.file for i in items if i.role == "original"}
    out = {}
    for edit, (_, value, bins, label) in BINS.items():
        rows = []
        for low, high in bins:
            hits = [Pair((originals[i.cluster], i.file)) in predicted for i in items
                    if i.role == edit and low <= value(i.params) < high]
            rows.append((label.format(low, round(high)), sum(hits) / len(hits) if hits else float("nan"), len(hits)))
        out[edit] = rows
    return out


# ------------------------------------------------------------------------------------- tables

def dataset_table(items: list[Item]) -> list[str]:
    families = sorted({i.family for i in items})
    lines = ["| split | images | sources | " + " | ".join(families) + " | copies | " + " | ".join(f"look-alike: {k}" for k in LOOKALIKE_KINDS) + " |",
             "|---|---:|---:|" + "---:|" * len(families) + "---:|" + "---:|" * len(LOOKALIKE_KINDS)]
    for split in dataset.SPLITS:
        rows = [i for i in items if i.split == split]
        originals = [i for i in rows if i.role == "original"]
        fam = Counter(i.family for i in originals)
        lines.append(f"| {split} | {len(rows)} | {len(originals)} | " + " | ".join(str(fam[f]) for f in families)
                     + f" | {sum(1 for i in rows if i.cluster and i.role != 'original')} | "
                     + " | ".join(str(sum(1 for i in rows if i.role == k)) for k in LOOKALIKE_KINDS) + " |")
    return lines


def overall_table(results: dict[str, Score], looks: dict[str, dict]) -> list[str]:
    lines = ["| method | precision | recall | F1 | true pairs found | false pairs | missed pairs | look-alikes joined to their source | look-alike pairs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in results.items():
        rows = looks[name]
        n = sum(r[0] for r in rows.values())
        lines.append(f"| {name} | {s.row()} | {sum(r[1] for r in rows.values())} of {n} | {sum(r[3] for r in rows.values())} |")
    return lines


def edit_table(results: dict[str, Score]) -> list[str]:
    names = list(results)
    lines = ["| edit | tier | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for edit in EDIT_NAMES:
        lines.append(f"| {edit} | {TIER[edit]} | " + " | ".join(f"{results[n].per_transform.get(edit, float('nan')):.2f}" for n in names) + " |")
    for tier in ("near", "derived"):
        cells = []
        for n in names:
            values = [results[n].per_transform[e] for e in EDIT_NAMES if TIER[e] == tier and e in results[n].per_transform]
            cells.append(f"{np.mean(values):.2f}")
        lines.append(f"| **all {tier} edits** (mean) | {tier} | " + " | ".join(cells) + " |")
    return lines


def bins_table(binned: dict[str, dict]) -> list[str]:
    names = list(binned)
    lines = ["| edit | range | copies | " + " | ".join(names) + " |", "|---|---|---:|" + "---:|" * len(names)]
    first = binned[names[0]]
    for edit, rows in first.items():
        for k, (label, _, count) in enumerate(rows):
            lines.append(f"| {edit} | {label} | {count} | " + " | ".join(f"{binned[n][edit][k][1]:.2f}" for n in names) + " |")
    return lines


def lookalike_table(looks: dict[str, dict]) -> list[str]:
    lines = ["| method | look-alike | images | joined to their source's group | in any group | look-alike pairs predicted (of all) |",
             "|---|---|---:|---:|---:|---:|"]
    for name, rows in looks.items():
        for kind, (n, joined, anywhere, hit, total) in rows.items():
            lines.append(f"| {name} | {kind} | {n} | {joined} | {anywhere} | {hit} of {total} |")
    return lines


def grouped_lookalike_table(answer: dict, items: list[Item], limit: int = 25) -> list[str]:
    """Look-alikes the CLI put in a group: with what, the tier it gave and its evidence."""
    by_file = {i.file: i for i in items}
    lines = ["| look-alike | kind | how it was made | kept copy of its group | tier | evidence (vs the kept copy) |",
             "|---|---|---|---|---|---|"]
    rows = []
    for group in answer["groups"]:
        kept = Path(group["members"][0]["uri"]).name
        for m in group["members"]:
            name = Path(m["uri"]).name
            item = by_file.get(name)
            if item and not item.cluster:
                made = ", ".join(f"{k} {v}" for k, v in item.params.items() if k != "box")
                evidence = json.dumps(m.get("evidence"), separators=(",", ":")) if m.get("evidence") else ""
                rows.append(f"| {name} | {item.role} | {made} | {kept} | {m.get('tier', '')} | `{evidence[:200]}` |")
    if not rows:
        return ["(none)"]
    return lines + rows[:limit] + ([f"| ... {len(rows) - limit} more | | | | | |"] if len(rows) > limit else [])


def evidence_table(answer: dict, items: list[Item], keys: tuple = ("inliers", "inlier_ratio", "coverage")) -> list[str]:
    """The geometric verification's numbers for what it accepted (group members) and rejected
    (`similar` pairs), split by the truth: copies of one source or not."""
    by_file = {i.file: i for i in items}
    rows: dict[str, list[dict]] = defaultdict(list)

    def add(a: str, b: str, evidence: dict | None, verdict: str) -> None:
        check = (evidence or {}).get("verification") or {}
        x, y = by_file.get(Path(a).name), by_file.get(Path(b).name)
        if not check or not x or not y:
            return
        truth = "copy pair" if x.cluster and x.cluster == y.cluster else \
            f"look-alike pair ({(x if not x.cluster else y).role})" if not x.cluster or not y.cluster else "two sources"
        rows[f"{verdict}: {truth}"].append(check)

    for group in answer["groups"]:
        kept = group["members"][0]["uri"]
        for m in group["members"][1:]:
            add(kept, m["uri"], m.get("evidence"), "grouped")
    for pair in answer.get("similar", []):
        add(pair["a"], pair["b"], pair.get("evidence"), "rejected (`similar`)")
    if not rows:
        return ["(no verification evidence in the CLI's JSON)"]
    lines = ["| verdict: truth | pairs | " + " | ".join(f"{k} min / 10% / median / 90% / max" for k in keys) + " |",
             "|---|---:|" + "---|" * len(keys)]
    for label in sorted(rows):
        cells = []
        for k in keys:
            v = np.array([float(c[k]) for c in rows[label] if isinstance(c.get(k), (int, float))])
            cells.append(" / ".join(f"{x:.3g}" for x in np.percentile(v, (0, 10, 50, 90, 100))) if len(v) else "-")
        lines.append(f"| {label} | {len(rows[label])} | " + " | ".join(cells) + " |")
    return lines


def false_table(results: dict[str, Score], items: list[Item]) -> list[str]:
    lines = ["| method | false pairs | joins |", "|---|---:|---|"]
    for name, s in results.items():
        for kind, count in false_pair_kinds(s.predicted, items).most_common():
            lines.append(f"| {name} | {count} | {kind} |")
    return lines


def tier_table(answer: dict, items: list[Item]) -> list[str]:
    """Tiers the CLI gave the copies it grouped with their source, per edit."""
    tiers = answer_tiers(answer)
    if not tiers:
        return ["(the CLI's JSON has no `tier` on its members)"]
    groups = answer_groups(answer)
    group_of = {f: k for k, g in enumerate(groups) for f in g}
    originals = {i.cluster: i.file for i in items if i.role == "original"}
    labels = sorted(set(tiers.values()))
    lines = ["| edit | expected | " + " | ".join(labels) + " | not with its source |", "|---|---|" + "---:|" * (len(labels) + 1)]
    for edit in EDIT_NAMES:
        counts: Counter = Counter()
        for i in items:
            if i.role == edit:
                together = i.file in group_of and group_of[i.file] == group_of.get(originals[i.cluster])
                counts[tiers.get(i.file, "kept copy") if together else "apart"] += 1
        lines.append(f"| {edit} | {TIER[edit]} | " + " | ".join(str(counts[t]) for t in labels) + f" | {counts['apart']} |")
    similar = answer_pairs(answer, "similar")
    unverified = answer_pairs(answer, "unverified")
    look = set().union(*lookalike_pairs(items).values())
    truth = true_pairs(items)
    lines += ["", f"Pairs the CLI listed apart: `similar` {len(similar)} (look-alike pairs {len(similar & look)}, "
                  f"true copy pairs {len(similar & truth)}); `unverified` {len(unverified)} "
                  f"(look-alike pairs {len(unverified & look)}, true copy pairs {len(unverified & truth)})."]
    return lines


def grid_table(grid: dict, rows: tuple, cols: tuple, cell) -> list[str]:
    lines = ["| max_distance | " + " | ".join(str(c) for c in cols) + " |", "|---:|" + "---:|" * len(cols)]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(cell(grid.get((r, c))) for c in cols) + " |")
    return lines


def best(grid: dict) -> tuple:
    """Best F1; ties go to the smaller thresholds."""
    return max(grid, key=lambda k: (round(grid[k].f1, 6), *(-x for x in (k if isinstance(k, tuple) else (k,)))))


# --------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 sources and small grids: a few minutes")
    parser.add_argument("--workdir", type=Path,
                        help="keep dataset and stack data here (default: a temp dir, removed); a dataset there is reused (and rescanned)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the sweep on test (recall at precision 0.99)")
    parser.add_argument("--tune-grid", action="store_true", help="also tune DeepLens' two thresholds on `tune`")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--no-imagededup", action="store_true",
                        help="skip imagededup (most of the run's time; its figures depend on the dataset alone)")
    args = parser.parse_args()
    config = QUICK if args.quick else FULL

    from deeplens.connectors.queries.grouping import DEFAULT_MAX_DISTANCE, DEFAULT_MAX_SEMANTIC_DISTANCE

    started = time.perf_counter()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="deeplens-neardup2-") as tmp:
        root = args.workdir or Path(tmp)
        images = root / "images"
        t = time.perf_counter()
        reused = (images / "manifest.json").exists()
        if reused:
            items = dataset.load(images)
            log(f"dataset: reusing {images}")
        else:
            log(f"dataset -> {images}")
            items = dataset.build(images, quick=args.quick, log=log)
        timings["dataset"] = time.perf_counter() - t
        by_split = {split: [i for i in items if i.split == split] for split in dataset.SPLITS}
        tune, test = by_split["tune"], by_split["test"]
        log(f"{len(items)} images: " + ", ".join(f"{s}: {len(rows)}" for s, rows in by_split.items()))

        defaults = f"DeepLens defaults ({DEFAULT_MAX_DISTANCE}, {DEFAULT_MAX_SEMANTIC_DISTANCE})"
        results: dict[str, Score] = {}
        answers: dict[str, dict] = {}
        grid: dict[tuple, Score] = {}
        sweep: dict[tuple, Score] = {}
        data_dir = root / "data"
        if data_dir.exists():  # an index from an earlier run names that run's module server port
            import shutil

            shutil.rmtree(data_dir)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the stack below is shut down
        with PrivateStack(data_dir) as stack:
            for split in dataset.SPLITS:
                stack("storage", "add", split, str(images / split))
            t = time.perf_counter()
            summaries = json.loads(stack("scan", *dataset.SPLITS, "--json"))
            timings["DeepLens scan (both splits)"] = time.perf_counter() - t
            log(f"scanned: {[(s['location'], s['new'], s['errors']) for s in summaries]}")
            if sum(s["errors"] for s in summaries):
                raise SystemExit(f"scan errors:\n{stack('scan', '--errors', *dataset.SPLITS)}")
            near = NearDuplicatesCLI(stack)

            t = time.perf_counter()
            answers[defaults] = near("test")
            results[defaults] = score(group_pairs(answer_groups(answers[defaults])), test)
            timings["DeepLens defaults on test (one call)"] = time.perf_counter() - t
            log(f"{defaults} on test: P {results[defaults].precision:.3f} R {results[defaults].recall:.3f} "
                f"F1 {results[defaults].f1:.3f} ({timings['DeepLens defaults on test (one call)']:.0f} s)")
            answers["tune defaults"] = near("tune")
            tune_defaults = score(group_pairs(answer_groups(answers["tune defaults"])), tune)

            tuned = None
            if args.tune_grid:
                t = time.perf_counter()
                for md, sd in itertools.product(config["max_distance"], config["max_semantic"]):
                    grid[(md, sd)] = score(group_pairs(answer_groups(near("tune", md, sd))), tune)
                    log(f"tune max_distance={md} max_semantic={sd}: F1 {grid[(md, sd)].f1:.3f}")
                timings["DeepLens grid on tune"] = time.perf_counter() - t
                tuned = best(grid)
                name = f"DeepLens tuned on tune ({tuned[0]}, {tuned[1]})"
                answers[name] = near("test", *tuned)
                results[name] = score(group_pairs(answer_groups(answers[name])), test)

            if not args.no_sweep:
                t = time.perf_counter()
                sweep[(DEFAULT_MAX_DISTANCE, DEFAULT_MAX_SEMANTIC_DISTANCE)] = results[defaults]
                for md, sd in itertools.product(config["sweep_distance"](DEFAULT_MAX_DISTANCE),
                                                config["sweep_semantic"](DEFAULT_MAX_SEMANTIC_DISTANCE)):
                    sd = round(sd, 3)
                    if (md, sd) not in sweep:
                        sweep[(md, sd)] = score(group_pairs(answer_groups(near("test", md, sd))), test)
                        log(f"sweep on test max_distance={md} max_semantic={sd}: P {sweep[(md, sd)].precision:.3f} "
                            f"R {sweep[(md, sd)].recall:.3f}")
                timings["DeepLens sweep on test"] = time.perf_counter() - t

        tuned_imagededup = {}
        if not args.no_imagededup:
            t = time.perf_counter()
            encoded = {split: imagededup_encodings(images / split) for split in dataset.SPLITS}
            timings["imagededup encode (PHash + CNN, both splits)"] = time.perf_counter() - t
            t = time.perf_counter()
            for method, thresholds, label in (("phash", config["phash"], "imagededup PHash"),
                                              ("cnn", config["cnn"], "imagededup CNN MobileNetV2")):
                scores = {th: score(imagededup_pairs(method, encoded["tune"], th), tune) for th in thresholds}
                th = max(scores, key=lambda k: (round(scores[k].f1, 6), -k if method == "phash" else k))
                tuned_imagededup[method] = (th, scores)
                results[f"{label} tuned on tune ({th})"] = score(imagededup_pairs(method, encoded["test"], th), test)
            timings["imagededup grids and test"] = time.perf_counter() - t

    looks = {name: lookalike_rows(s.predicted, test) for name, s in results.items()}
    binned = {name: binned_recall(s.predicted, test) for name, s in results.items()}
    total = time.perf_counter() - started
    fmt_pr = lambda s: f"{s.precision:.3f} / {s.recall:.3f}"
    out = [
        f"Run {dt.date.today().isoformat()} on {platform.node()} ({os.cpu_count()} CPU cores, {platform.machine()}), "
        f"`.venv/bin/python -m bench.neardup2{''.join(' ' + a for a in sys.argv[1:])}`, {total / 60:.1f} min in total.",
        "", "### Dataset", "", *dataset_table(items), "",
        f"Each source has {len(EDIT_NAMES)} copies (one per edit). Look-alikes are copies of nothing.",
        "", f"### Test split at the CLI's defaults, and thresholds tuned on `tune` (DeepLens defaults on tune: "
            f"P {tune_defaults.precision:.3f} / R {tune_defaults.recall:.3f} / F1 {tune_defaults.f1:.3f})", "",
        *overall_table(results, looks),
        "", "### Test split: recall per edit (source-copy pair predicted)", "", *edit_table(results),
        "", "### Test split: recall by edit strength (issue 20's targets: rotations to 5 degrees, borders to 15%, centre crops to 80%)",
        "", *bins_table(binned),
        "", "### Test split: look-alikes (negatives; any pair with one is a false pair)", "", *lookalike_table(looks),
        "", "### Test split: false pairs by what they join", "", *false_table(results, test),
        "", "### Test split: look-alikes DeepLens grouped at its defaults", "", *grouped_lookalike_table(answers[defaults], test),
        "", "### Test split: tiers the CLI reported at its defaults", "", *tier_table(answers[defaults], test),
        "", "### Test split: geometric verification at the defaults, accepted and rejected pairs by the truth", "",
        *evidence_table(answers[defaults], test),
    ]
    if grid:
        out += ["", "### DeepLens grid on `tune` (pairwise F1; rows --max-distance, columns --max-semantic-distance)", "",
                *grid_table(grid, config["max_distance"], config["max_semantic"], lambda s: f"{s.f1:.3f}"),
                "", f"Best on tune: {tuned} (F1 {grid[tuned].f1:.3f})."]
    if tuned_imagededup:
        out += [
            "", "### imagededup thresholds on `tune` (pairwise F1)", "",
            "| method | threshold: F1 |", "|---|---|",
            *[f"| {m} | " + ", ".join(f"{th}: {s.f1:.3f}" for th, s in sc.items()) + f" (chosen {th0}) |"
              for m, (th0, sc) in tuned_imagededup.items()],
        ]
    if sweep:
        ok = [k for k, s in sweep.items() if s.precision >= 0.99]
        at = max(ok, key=lambda k: (sweep[k].recall, -k[0], -k[1])) if ok else None
        rows = sorted({k[0] for k in sweep})
        cols = sorted({k[1] for k in sweep})
        out += ["", "### ORACLE, not a tuned result: DeepLens thresholds swept ON TEST (precision / recall)", "",
                *grid_table(sweep, rows, cols, lambda s: fmt_pr(s) if s else "-"), "",
                (f"Best recall at precision >= 0.99 on test: **{sweep[at].recall:.3f}** (precision {sweep[at].precision:.3f}, "
                 f"F1 {sweep[at].f1:.3f}) at --max-distance {at[0]} --max-semantic-distance {at[1]}."
                 if at else "No grid point reaches precision 0.99 on test.")]
    out += ["", "### Timings", "", "| step | seconds |", "|---|---:|", *[f"| {k} | {v:.0f} |" for k, v in timings.items()]]
    print("\n".join(out))
    if args.json:
        args.json.write_text(json.dumps({
            "grid": {f"{md},{sd}": vars(s) | {"predicted": None} for (md, sd), s in grid.items()},
            "sweep_on_test": {f"{md},{sd}": vars(s) | {"predicted": None} for (md, sd), s in sweep.items()},
            "tuned": tuned, "imagededup_tuned": {m: th for m, (th, _) in tuned_imagededup.items()},
            "results": {n: vars(s) | {"predicted": sorted(sorted(p) for p in s.predicted)} for n, s in results.items()},
            "lookalikes": looks, "timings": timings, "cli_answers": answers,
        }, indent=1, default=str))


if __name__ == "__main__":
    main()
