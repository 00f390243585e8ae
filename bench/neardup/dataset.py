"""The near-duplicate benchmark's images, generated deterministically on disk.

Originals: the real sample photos of deeplens.samples plus seeded drawn scenes (gradients,
shapes, text, grain). Each original gets one copy per transform (deeplens.samples.TRANSFORMS plus
a PNG format change). Distractors are unrelated images that are copies of nothing: more drawn
scenes, real images that are not originals, and small tiles cut out of the sample photos.
Ground truth: one cluster per original (the original and its copies); distractors are singletons.

Originals are split deterministically into a `tune` and a `test` split; each split gets the
copies of its originals and half of the distractors, in its own folder.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from deeplens.samples import TRANSFORMS, jpeg_bytes, sample_photos

SPLITS = ("tune", "test")
FORMAT_TRANSFORM = "png"  # a lossless copy of the decoded original, saved as PNG
ALL_TRANSFORMS = (*TRANSFORMS, FORMAT_TRANSFORM)
# Real images bundled with scikit-image that are not among the sample photos: distractors only.
EXTRA_PHOTOS = ("clock", "horse", "page", "text", "cell", "stereo_motorcycle")
SCENE_SIZES = ((640, 480), (480, 640), (800, 450), (512, 512), (600, 400), (400, 600))
WORDS = ("harbour", "invoice", "summer", "DeepLens", "north", "2024", "sale", "garden", "route 66",
         "blue", "meeting", "archive", "lab", "delta", "kitchen", "42")


@dataclass(frozen=True)
class Item:
    file: str  # relative to the split folder
    split: str
    cluster: str | None  # the original's id; None for distractors
    role: str  # "original", a transform name, or "distractor"


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def drawn_scene(seed: int) -> Image.Image:
    """A seeded scene: a two-colour gradient, 4-9 large shapes, a word or two, then blur and grain,
    so it has the low-frequency structure pHash looks at and some texture."""
    rng = random.Random(seed)
    w, h = rng.choice(SCENE_SIZES)
    c1, c2 = (np.array([rng.randrange(256) for _ in range(3)], dtype=np.float64) for _ in range(2))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    if rng.random() < 0.7:
        t = (xx / w - 0.5) * np.cos(angle) + (yy / h - 0.5) * np.sin(angle)
        t = (t - t.min()) / (t.max() - t.min())
    else:
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        t = np.hypot(xx - cx, yy - cy)
        t = t / t.max()
    background = (c1[None, None] * (1 - t[..., None]) + c2[None, None] * t[..., None]).astype(np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(4, 9)):
        colour = tuple(rng.randrange(256) for _ in range(3))
        kind = rng.choice(("ellipse", "rectangle", "polygon", "line", "pieslice"))
        x0, y0 = rng.uniform(-0.1, 0.8) * w, rng.uniform(-0.1, 0.8) * h
        x1, y1 = x0 + rng.uniform(0.15, 0.6) * w, y0 + rng.uniform(0.15, 0.6) * h
        if kind == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == "rectangle":
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == "pieslice":
            start = rng.uniform(0, 360)
            draw.pieslice((x0, y0, x1, y1), start, start + rng.uniform(60, 300), fill=colour)
        elif kind == "polygon":
            points = [(rng.uniform(x0, x1), rng.uniform(y0, y1)) for _ in range(rng.randint(3, 6))]
            draw.polygon(points, fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=rng.randint(4, max(5, w // 25)))
    for _ in range(rng.randint(1, 2)):
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.text((rng.uniform(0.05, 0.6) * w, rng.uniform(0.05, 0.85) * h), rng.choice(WORDS),
                  fill=colour, font=_font(rng.randint(h // 16, h // 7)))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    noise = np.random.default_rng(seed).normal(0, rng.uniform(2, 8), (h, w, 1))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def _extra_photos() -> dict[str, Image.Image]:
    import skimage.data

    photos = {}
    for name in EXTRA_PHOTOS:
        array = getattr(skimage.data, name)()
        if isinstance(array, tuple):  # stereo pair: the left view only
            array = array[0]
        photos[name] = Image.fromarray(array).convert("RGB")
    return photos


def _tile(photo: Image.Image, rng: random.Random) -> Image.Image:
    """A small window (about a tenth of the area) of a photo, scaled up: a different picture."""
    w, h = photo.size
    tw, th = int(w * rng.uniform(0.28, 0.36)), int(h * rng.uniform(0.28, 0.36))
    x, y = rng.randrange(0, w - tw), rng.randrange(0, h - th)
    return photo.crop((x, y, x + tw, y + th)).resize((tw * 2, th * 2), Image.Resampling.LANCZOS)


def _save_copy(image: Image.Image, path: Path, transform: str) -> None:
    if transform == FORMAT_TRANSFORM:
        image.save(path, "PNG")
    else:
        path.write_bytes(jpeg_bytes(image))


def build(root: Path, photo_originals: int | None = None, drawn_originals: int = 44, distractors: int = 100,
          seed: int = 0) -> list[Item]:
    """Write root/<split>/... for both splits and root/manifest.json; return the manifest.
    photo_originals: how many of the sample photos become originals (None: all)."""
    rng = random.Random(seed)
    photos = sample_photos()
    chosen = sorted(photos)[:photo_originals]  # None: all
    originals: list[tuple[str, Image.Image]] = [(f"photo-{name}", photos[name]) for name in chosen]
    originals += [(f"scene-{i:03}", drawn_scene(seed * 100_003 + i)) for i in range(drawn_originals)]
    # Deterministic split: shuffle photos and scenes separately, alternate, so both splits get
    # half of each kind.
    split_of: dict[str, str] = {}
    for kind in ("photo-", "scene-"):
        ids = sorted(o for o, _ in originals if o.startswith(kind))
        rng.shuffle(ids)
        for index, oid in enumerate(ids):
            split_of[oid] = SPLITS[index % 2]

    items: list[Item] = []
    for split in SPLITS:
        (root / split).mkdir(parents=True, exist_ok=True)
    for oid, image in originals:
        split = split_of[oid]
        folder = root / split
        original_path = folder / f"{oid}.jpg"
        original_path.write_bytes(jpeg_bytes(image))
        items.append(Item(original_path.name, split, oid, "original"))
        source = Image.open(original_path).convert("RGB")  # copies are made from the stored file
        for transform in ALL_TRANSFORMS:
            copy = source.copy() if transform == FORMAT_TRANSFORM else TRANSFORMS[transform](source)
            name = f"{oid}--{transform}.{'png' if transform == FORMAT_TRANSFORM else 'jpg'}"
            _save_copy(copy, folder / name, transform)
            items.append(Item(name, split, oid, transform))

    # Distractors: about a tenth real images that are not originals, a fifth tiles of sample
    # photos, the rest drawn scenes with their own seeds. Alternate between the splits.
    pool: list[tuple[str, Image.Image]] = list(_extra_photos().items())[: max(1, distractors // 10)]
    photo_names = sorted(photos)
    for i in range(distractors // 5):
        name = photo_names[i % len(photo_names)]
        pool.append((f"tile-{name}-{i:03}", _tile(photos[name], rng)))
    i = 0
    while len(pool) < distractors:
        pool.append((f"other-{i:03}", drawn_scene(seed * 100_003 + 50_000 + i)))
        i += 1
    for index, (name, image) in enumerate(pool[:distractors]):
        split = SPLITS[index % 2]
        path = root / split / f"distractor-{name}.jpg"
        path.write_bytes(jpeg_bytes(image))
        items.append(Item(path.name, split, None, "distractor"))

    (root / "manifest.json").write_text(json.dumps([asdict(item) for item in items], indent=1))
    return items


def load(root: Path) -> list[Item]:
    return [Item(**row) for row in json.loads((root / "manifest.json").read_text())]


if __name__ == "__main__":  # write a dataset to look at: python -m bench.neardup.dataset DIR
    import sys

    built = build(Path(sys.argv[1]))
    print(f"{len(built)} images in {sys.argv[1]}")
