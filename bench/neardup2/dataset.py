"""bench/neardup2's images, generated deterministically on disk: a second near-duplicate set, made
independently of bench/neardup (other source images, another generator of drawn scenes, another
library of edits) and with look-alike images that are not copies.

Sources (each becomes one ground-truth group: the source and its 22 edited copies):
- real photos shipped inside PyPI wheels (no download at run time): matplotlib's `grace_hopper.jpg`;
  glymur's `nemo.jp2` (a 2592x1456 phone photo of a snowy street: 640x480 windows of it) and
  `goodstuff.j2k`; mahotas' `luispedro.jpg` and `DepartmentStore.jpg` (a dense illustration:
  448x336 windows); PyWavelets' `aero` and `ascent` (greyscale). Nothing from scikit-image or
  scikit-learn, which bench/neardup uses.
- drawn scenes (bench/neardup2/scenes.py): landscapes, cities, mosaics, terrain maps, posters and
  product shots.
Copies: bench/neardup2/edits.py (AugLy, OpenCV).

Look-alikes (negatives: separate images, copies of nothing, each next to the source it resembles):
- `burst`: another shot of the same scene, re-framed beyond a crop: a window of the same photo or
  drawn canvas overlapping the source's window by 20-50% of its area, with its own grain and a
  slight exposure change (drawn scenes: clouds, cars and lit windows moved too);
- `exposure`: the same scene, framed a little differently (overlap 50-70%) and exposed 0.6-1.2 EV
  brighter or darker, like one frame of a bracketed series (drawn scenes: things moved too);
- `product`: the same studio, light and framing with a different object;
- `style`: drawn by the same generator in the same style (palette, layout, font), other content.
Every window cut from one photo or canvas overlaps every other window of it by less than 50%,
except an `exposure` window and its source (50-70%).

Splits: by source, seeded. The halves of nemo.jp2 and of DepartmentStore.jpg go to different
splits, whole photos alternate, drawn sources alternate within each family; a look-alike goes
with its source. No pixel of a source is in both splits.
"""

from __future__ import annotations

import importlib.util
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from bench.neardup2 import edits, scenes

SPLITS = ("tune", "test")
EDIT_NAMES = tuple(edits.EDITS)
LOOKALIKE_KINDS = ("burst", "exposure", "product", "style")
STYLE_FAMILIES = ("landscape", "city", "mosaic", "terrain", "poster")

FULL = dict(nemo_windows=6, store_windows=2, whole=None,
            drawn={"landscape": 7, "city": 7, "mosaic": 6, "terrain": 6, "poster": 6, "product": 6})
QUICK = dict(nemo_windows=2, store_windows=1, whole=2,
             drawn={"landscape": 1, "city": 1, "mosaic": 1, "terrain": 1, "poster": 1, "product": 1})
P_BURST, P_EXPOSURE, P_STYLE = 0.6, 0.5, 0.5
PRODUCT_SIBLINGS = 2


@dataclass(frozen=True)
class Item:
    file: str  # relative to the split folder
    split: str
    cluster: str | None  # the source's id for the source and its copies; None for look-alikes
    role: str  # "original", an edit name, or a look-alike kind
    family: str  # photo, illustration, landscape, city, mosaic, terrain, poster, product
    lookalike_of: str | None = None  # look-alikes: the source they resemble
    params: dict = field(default_factory=dict)  # the edit's parameters, or how the look-alike was made


@dataclass
class Source:
    id: str
    family: str
    unit: str  # what the split is drawn by
    image: Image.Image
    lookalikes: list[tuple[str, Image.Image, dict]] = field(default_factory=list)


# ------------------------------------------------------------------------------- real photos

def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # the folder, without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"bench/neardup2 needs the `{name}` package (pip install -e '.[bench]')")
    return Path(spec.submodule_search_locations[0])


def real_photos() -> dict[str, Image.Image]:
    """The photos this set uses, all from files inside installed wheels."""
    import matplotlib.cbook
    import pywt.data

    glymur = _package_dir("glymur") / "data"
    mahotas = _package_dir("mahotas") / "demos" / "data"
    photos = {
        "grace_hopper": Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
        "nemo": Image.open(glymur / "nemo.jp2"),  # Pillow decodes JPEG 2000 with its bundled OpenJPEG
        "goodstuff": Image.open(glymur / "goodstuff.j2k"),
        "luispedro": Image.open(mahotas / "luispedro.jpg"),
        "department_store": Image.open(mahotas / "DepartmentStore.jpg"),
        "aero": Image.fromarray(np.asarray(pywt.data.aero()).astype(np.uint8)),
        "ascent": Image.fromarray(np.clip(np.asarray(pywt.data.ascent()), 0, 255).astype(np.uint8)),
    }
    return {name: image.convert("RGB") for name, image in photos.items()}


WHOLE_PHOTOS = ("grace_hopper", "goodstuff", "luispedro", "aero", "ascent")


# ------------------------------------------------------------------------------------ windows

Box = tuple[int, int, int, int]  # x, y, w, h


def overlap(a: Box, b: Box) -> float:
    """Shared area over the smaller window's area."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / min(a[2] * a[3], b[2] * b[3])


def place(canvas: tuple[int, int], size: tuple[int, int], partner: Box, low: float, high: float,
          others: list[Box], rng: random.Random, tries: int = 4000) -> Box | None:
    """A window of `size` in `canvas` overlapping `partner` by [low, high) and every other window
    by less than 0.5; None if none was found."""
    cw, ch = canvas
    w, h = size
    for _ in range(tries):
        box = (rng.randrange(0, cw - w + 1), rng.randrange(0, ch - h + 1), w, h)
        if low <= overlap(box, partner) < high and all(overlap(box, o) < 0.5 for o in others if o != partner):
            return box
    return None


def cut(image: Image.Image, box: Box) -> Image.Image:
    x, y, w, h = box
    return image.crop((x, y, x + w, y + h))


def exposure(image: Image.Image, ev: float, rng: random.Random) -> Image.Image:
    """Another exposure: gain in linear light, highlights clip, a slight white-balance shift, new grain."""
    a = np.asarray(image, dtype=np.float32) / 255.0
    linear = a ** 2.2 * (2.0 ** ev) * np.array([rng.uniform(0.96, 1.04) for _ in range(3)], np.float32)
    out = np.clip(linear, 0, 1) ** (1 / 2.2) * 255
    grain = np.random.default_rng(rng.randrange(2**31)).normal(0, rng.uniform(1.5, 3.5), out.shape[:2] + (1,))
    return Image.fromarray(np.clip(out + grain, 0, 255).astype(np.uint8))


def _lookalike_windows(source: Source, canvas: Image.Image, recanvas, box: Box, others: list[Box],
                       rng: random.Random) -> None:
    """Burst and exposure look-alikes of one source window, appended to source.lookalikes;
    `recanvas()` gives the canvas of another moment (the same canvas for photos)."""
    size = (box[2], box[3])
    if rng.random() < P_BURST:
        found = place(canvas.size, size, box, 0.2, 0.5, others, rng)
        if found:
            others.append(found)
            ev = rng.uniform(-0.15, 0.15)
            source.lookalikes.append(("burst", exposure(cut(recanvas(), found), ev, rng),
                                      {"box": found, "overlap": round(overlap(found, box), 3), "ev": round(ev, 2)}))
    if rng.random() < P_EXPOSURE:
        found = place(canvas.size, size, box, 0.5, 0.7, others, rng)
        if found:
            others.append(found)
            ev = rng.choice((-1, 1)) * rng.uniform(0.6, 1.2)
            source.lookalikes.append(("exposure", exposure(cut(recanvas(), found), ev, rng),
                                      {"box": found, "overlap": round(overlap(found, box), 3), "ev": round(ev, 2)}))


def _photo_sources(config: dict, seed: int) -> list[Source]:
    photos = real_photos()
    rng = random.Random(f"{seed}:photos")
    sources: list[Source] = []
    for name, family, window, count in (("nemo", "photo", (640, 480), config["nemo_windows"]),
                                        ("department_store", "illustration", (448, 336), config["store_windows"])):
        image = photos[name]
        half = image.width // 2
        for side, x0 in (("left", 0), ("right", half)):
            canvas = image.crop((x0, 0, x0 + half, image.height))
            cols = max(1, canvas.width // window[0])
            rows = max(1, canvas.height // window[1])
            cells = [(c, r) for r in range(rows) for c in range(cols)]
            rng.shuffle(cells)
            gap_x = (canvas.width - cols * window[0]) // max(1, cols)
            gap_y = (canvas.height - rows * window[1]) // max(1, rows)
            boxes = [(c * (window[0] + gap_x), r * (window[1] + gap_y), *window) for c, r in sorted(cells[:count])]
            others = list(boxes)
            for k, box in enumerate(boxes):
                source = Source(f"{name}-{side}-{k}", family, f"{name}-{side}", cut(canvas, box))
                _lookalike_windows(source, canvas, lambda: canvas, box, others, rng)
                sources.append(source)
    for name in WHOLE_PHOTOS[: config["whole"]]:
        sources.append(Source(name, "photo", name, photos[name]))
    return sources


# ------------------------------------------------------------------------------- drawn scenes

def _drawn_sources(config: dict, seed: int, split_of_index) -> list[Source]:
    sources: list[Source] = []
    for family, per_split in config["drawn"].items():
        for i in range(2 * per_split):
            rng = random.Random(f"{seed}:{family}:{i}")
            style_seed, content_seed, moment_seed = (rng.randrange(2**31) for _ in range(3))
            style = scenes.style_for(family, style_seed)
            size = rng.choice(scenes.PICTURE_SIZES)
            sid = f"{family}-{i:02}"
            if family in scenes.CANVAS_FAMILIES:
                canvas_size = (int(size[0] * 2.0), int(size[1] * 1.4))
                canvas = scenes.render(family, canvas_size, style, content_seed, moment_seed)
                box = (rng.randrange(0, canvas_size[0] - size[0] + 1), rng.randrange(0, canvas_size[1] - size[1] + 1), *size)
                source = Source(sid, family, sid, cut(canvas, box))
                moments = iter(range(1, 100))
                _lookalike_windows(source, canvas,
                                   lambda: scenes.render(family, canvas_size, style, content_seed, moment_seed + next(moments)),
                                   box, [box], rng)
            elif family == "product":
                kinds = list(scenes.PRODUCT_KINDS)
                rng.shuffle(kinds)
                source = Source(sid, family, sid, scenes.render(family, size, style, content_seed, moment_seed, kind=kinds[0]))
                for k, kind in enumerate(kinds[1: 1 + PRODUCT_SIBLINGS]):
                    image = scenes.render(family, size, style, content_seed + 1 + k, moment_seed + 1 + k, kind=kind)
                    source.lookalikes.append(("product", image, {"object": kind, "source_object": kinds[0]}))
            else:
                source = Source(sid, family, sid, scenes.render(family, size, style, content_seed, moment_seed))
            if family in STYLE_FAMILIES and rng.random() < P_STYLE:
                other = scenes.render(family, size, style, content_seed + 1000, moment_seed + 1000)
                source.lookalikes.append(("style", other, {"style_seed": style_seed}))
            source.unit = split_of_index(family, i)
            sources.append(source)
    return sources


# ------------------------------------------------------------------------------------- build

def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    return edits.encode(image, {"format": "jpeg", "quality": quality})[0]


def _plain(value):
    return json.loads(json.dumps(value, default=list))


def build(root: Path, quick: bool = False, seed: int = 0, log=lambda message: None) -> list[Item]:
    """Write root/<split>/... for both splits and root/manifest.json; return the manifest."""
    config = QUICK if quick else FULL
    rng = random.Random(f"{seed}:splits")

    # Drawn sources alternate between the splits in a seeded order within each family.
    drawn_split: dict[tuple[str, int], str] = {}
    for family, per_split in config["drawn"].items():
        order = list(range(2 * per_split))
        rng.shuffle(order)
        for position, i in enumerate(order):
            drawn_split[(family, i)] = SPLITS[position % 2]

    sources = _photo_sources(config, seed)
    split_of: dict[str, str] = {}
    for photo in ("nemo", "department_store"):  # one half each way
        first = rng.choice(SPLITS)
        split_of[f"{photo}-left"], split_of[f"{photo}-right"] = first, SPLITS[1 - SPLITS.index(first)]
    whole = [s.unit for s in sources if s.unit in WHOLE_PHOTOS]
    rng.shuffle(whole)
    for position, unit in enumerate(whole):
        split_of[unit] = SPLITS[position % 2]
    sources += _drawn_sources(config, seed, lambda family, i: f"drawn:{drawn_split[(family, i)]}")
    for source in sources:
        split_of.setdefault(source.unit, source.unit.split(":")[-1])
    log(f"dataset: {len(sources)} sources and {sum(len(s.lookalikes) for s in sources)} look-alikes drawn and cut")

    items: list[Item] = []
    for split in SPLITS:
        (root / split).mkdir(parents=True, exist_ok=True)
    for n, source in enumerate(sources):
        split = split_of[source.unit]
        folder = root / split
        original = folder / f"{source.id}.jpg"
        original.write_bytes(_jpeg(source.image))
        items.append(Item(original.name, split, source.id, "original", source.family))
        stored = Image.open(original).convert("RGB")  # copies are made from the stored file
        for name in EDIT_NAMES:
            data, ext, params = edits.apply(name, stored, f"{seed}:{source.id}")
            path = folder / f"{source.id}--{name}.{ext}"
            path.write_bytes(data)
            items.append(Item(path.name, split, source.id, name, source.family, params=_plain(params)))
        for k, (kind, image, params) in enumerate(source.lookalikes):
            path = folder / f"look-{kind}-{source.id}-{k}.jpg"
            path.write_bytes(_jpeg(image))
            items.append(Item(path.name, split, None, kind, source.family, lookalike_of=source.id, params=_plain(params)))
        if n % 10 == 9:
            log(f"dataset: {n + 1}/{len(sources)} sources written")

    (root / "manifest.json").write_text(json.dumps([asdict(item) for item in items], indent=1))
    return items


def load(root: Path) -> list[Item]:
    return [Item(**row) for row in json.loads((root / "manifest.json").read_text())]


if __name__ == "__main__":  # write a dataset to look at: python -m bench.neardup2.dataset DIR [--quick]
    import sys

    built = build(Path(sys.argv[1]), quick="--quick" in sys.argv, log=print)
    print(f"{len(built)} images in {sys.argv[1]}")
