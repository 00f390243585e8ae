"""Sample photos shipped in PyPI packages and the edits that make near-duplicates of them.

Used by `make demo` (two storage locations with copies), the end-to-end tests and bench/neardup.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

# scikit-image's bundled photos (those that need no download; `cat` is `chelsea` again) and
# scikit-learn's two sample images.
SKIMAGE_PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "hubble_deep_field",
    "retina", "coins", "moon", "brick", "grass", "gravel", "colorwheel",
)


def sample_photos() -> dict[str, Image.Image]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {name: Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in SKIMAGE_PHOTOS}
    for name, array in zip(("china", "flower"), load_sample_images().images):
        photos[name] = Image.fromarray(array).convert("RGB")
    return photos


def jpeg_bytes(image: Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def _recompress(image: Image.Image) -> Image.Image:
    return Image.open(io.BytesIO(jpeg_bytes(image, quality=35))).convert("RGB")


def _crop(image: Image.Image, fraction: float = 0.06) -> Image.Image:
    w, h = image.size
    dx, dy = int(w * fraction), int(h * fraction)
    return image.crop((dx, dy, w - dx, h - dy))


def _border(image: Image.Image) -> Image.Image:
    # Letterbox: black bars above and below, as a 16:9 export of a 4:3 photo would get.
    w, h = image.size
    return ImageOps.expand(image, border=(0, h // 10, 0, h // 10), fill=(0, 0, 0))


def _watermark(image: Image.Image) -> Image.Image:
    marked = image.copy()
    draw = ImageDraw.Draw(marked)
    w, h = marked.size
    draw.rectangle((w * 0.62, h * 0.86, w * 0.97, h * 0.96), fill=(255, 255, 255))
    draw.text((w * 0.64, h * 0.875), "(c) DeepLens", fill=(0, 0, 0))
    return marked


TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "recompress": _recompress,
    "resize": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
    "crop": _crop,
    "border": _border,
    "watermark": _watermark,
    "brightness": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
    "contrast": lambda im: ImageEnhance.Contrast(im).enhance(1.4),
    "grayscale": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "rotate_3deg": lambda im: im.rotate(3, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(0, 0, 0)),
    "rot90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rot180": lambda im: im.transpose(Image.Transpose.ROTATE_180),
    "rot270": lambda im: im.transpose(Image.Transpose.ROTATE_270),
    "mirror": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "flip": lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
}


def write_demo_locations(root: Path) -> dict[str, Path]:
    """Two folders, 'archive' (originals) and 'exports' (copies: byte-identical, edited, and a few
    unrelated images), so both exact and near-duplicates span locations."""
    archive, exports = root / "archive", root / "exports"
    for folder in (archive, exports / "edited", exports / "same"):
        folder.mkdir(parents=True, exist_ok=True)
    photos = sample_photos()
    names = sorted(photos)
    originals = names[:10]
    for name in originals:
        (archive / f"{name}.jpg").write_bytes(jpeg_bytes(photos[name]))
    for name in originals[:3]:  # byte-identical copies
        (exports / "same" / f"{name} copy.jpg").write_bytes((archive / f"{name}.jpg").read_bytes())
    for name, (edit, transform) in zip(originals, list(TRANSFORMS.items())[:10]):
        source = Image.open(archive / f"{name}.jpg").convert("RGB")
        (exports / "edited" / f"{name}-{edit}.jpg").write_bytes(jpeg_bytes(transform(source)))
    for name in names[10:]:  # distractors: in one place only
        (exports / f"{name}.jpg").write_bytes(jpeg_bytes(photos[name]))
    return {"archive": archive, "exports": exports}


def synthetic_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A random but natural-looking (smooth) image, for bulk data in tests and benchmarks."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
