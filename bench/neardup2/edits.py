"""The 22 edits of bench/neardup2: AugLy (the library that generated the DISC21 copy-detection
queries) where its image functions run here, OpenCV where they do not; not the PIL edits of
deeplens.samples that bench/neardup uses.

AugLy 1.0.0 on this stack (NumPy 2, Pillow >= 10): `perspective_transform` fails (`np.float`) and
`meme_format` fails (`FreeTypeFont.getsize_multiline`), so those two, the 90-degree rotations, the
JPEG recompression and the gallery-app screenshot are done with OpenCV (captions and status bar
set with Pillow in AugLy's fonts). Every other edit is AugLy's own function.

Each edit takes the original (PIL RGB) and a seeded random.Random and returns the edited image,
the parameters it drew, and how to save it (JPEG quality, or PNG). `TIER` says which tier of
issue 20 a copy belongs to: `near` (same picture: re-encoded, resized, recoloured, filtered, turned
by 90 degrees or mirrored) or `derived` (a crop, border, overlay, small rotation, tilt or frame).
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

Edit = Callable[[Image.Image, random.Random], tuple[Image.Image, dict, dict]]
JPEG = {"format": "jpeg", "quality": 90}

WATERMARKS = ("© 2024 Studio North", "@wanderlust.daily", "SAMPLE", "www.photo-archive.example", "DRAFT",
              "shot on my phone", "#tbt", "do not copy", "M. Keller Photography", "stock preview")
CAPTIONS = ("WHEN THE WIFI COMES BACK", "ME ON MONDAY", "NOBODY:", "THIS IS FINE", "TFW THE BUS IS EARLY",
            "ONE DOES NOT SIMPLY", "EXPECTATION", "POV: YOU FORGOT THE KEYS", "WEEKEND MOOD", "NAILED IT")


def _augly():
    import augly.image as imaugs  # needs python-magic and the libmagic system library

    return imaugs


def _assets() -> Path:
    import augly.utils

    return Path(augly.utils.FONTS_DIR).parent


def _text_indices(font_file: Path, text: str) -> list[int]:
    """AugLy's overlay_text takes indices into the font's character list (a .pkl beside the .ttf)."""
    with open(font_file.with_suffix(".pkl"), "rb") as f:
        chars = pickle.load(f)
    where = {c: i for i, c in enumerate(chars)}
    return [where[ord(c)] for c in text if ord(c) in where]


def _cv(image: Image.Image) -> np.ndarray:
    return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)


def _pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(cv2.cvtColor(array, cv2.COLOR_BGR2RGB))


# --------------------------------------------------------------------------------- near tier

def jpeg_low(im, r):
    q = r.randint(8, 20)
    return im, {"quality": q}, {"format": "jpeg", "quality": q}


def jpeg_mid(im, r):
    q = r.randint(30, 60)
    return im, {"quality": q}, {"format": "jpeg", "quality": q}


def downscale(im, r):
    f = round(r.uniform(0.3, 0.6), 3)
    return _augly().scale(im, factor=f), {"factor": f}, JPEG


def aspect(im, r):
    f = round(r.choice((r.uniform(0.7, 0.85), r.uniform(1.18, 1.4))), 3)
    return _augly().change_aspect_ratio(im, ratio=im.width / im.height * f), {"factor": f}, JPEG


def color_jitter(im, r):
    p = {"brightness_factor": round(r.uniform(0.7, 1.35), 3), "contrast_factor": round(r.uniform(0.7, 1.35), 3),
         "saturation_factor": round(r.uniform(0.4, 1.6), 3)}
    return _augly().color_jitter(im, **p), p, JPEG


def grayscale(im, r):
    return _augly().grayscale(im).convert("RGB"), {}, JPEG


def blur(im, r):
    radius = round(r.uniform(1.5, 3.5), 2)
    return _augly().blur(im, radius=radius), {"radius": radius}, JPEG


def sharpen(im, r):
    f = round(r.uniform(2.0, 6.0), 2)
    return _augly().sharpen(im, factor=f), {"factor": f}, JPEG


def noise(im, r):
    var = round(r.uniform(0.003, 0.02), 4)
    return _augly().random_noise(im, var=var, seed=r.randrange(2**31)), {"var": var}, JPEG


def _turn(code: int) -> Edit:
    def edit(im, r):
        return _pil(cv2.rotate(_cv(im), code)), {}, JPEG
    return edit


def mirror(im, r):
    return _augly().hflip(im), {}, JPEG


# ------------------------------------------------------------------------------ derived tier

def rotate_small(im, r):
    degrees = round(r.choice((-1, 1)) * r.uniform(2.0, 5.0), 2)
    # AugLy rotates and crops to the largest rectangle without black corners.
    return _augly().rotate(im, degrees=degrees), {"degrees": degrees}, JPEG


def border(im, r):
    f = round(r.uniform(0.05, 0.15), 3)
    colour = r.choice(((255, 255, 255), (0, 0, 0), tuple(r.randrange(256) for _ in range(3))))
    return _augly().pad(im, w_factor=f, h_factor=f, color=colour), {"factor": f, "color": colour}, JPEG


def crop_centre(im, r):
    c = round(r.uniform(0.80, 0.95), 3)
    m = (1 - c) / 2
    return _augly().crop(im, x1=m, y1=m, x2=1 - m, y2=1 - m), {"fraction": c}, JPEG


def crop_offcentre(im, r):
    c = round(r.uniform(0.75, 0.9), 3)
    x1 = r.choice((0.0, 1 - c))  # against the left or the right edge
    y1 = round(r.uniform(0, 1 - c), 3)
    return _augly().crop(im, x1=x1, y1=y1, x2=x1 + c, y2=y1 + c), {"fraction": c, "x1": x1, "y1": y1}, JPEG


def text_overlay(im, r):
    fonts = sorted(p for p in (_assets() / "fonts").glob("*.ttf")
                   if p.name.startswith(("Raleway", "Montserrat-", "OpenSans", "Ubuntu-", "SourceSansPro")))
    font = r.choice(fonts)
    text = r.choice(WATERMARKS)
    p = {"text": text, "font": font.name, "font_size": round(r.uniform(0.06, 0.12), 3),
         "opacity": round(r.uniform(0.5, 1.0), 2), "color": tuple(r.randrange(256) for _ in range(3)),
         "x_pos": round(r.uniform(0.02, 0.3), 3), "y_pos": round(r.uniform(0.1, 0.8), 3)}
    out = _augly().overlay_text(im, text=_text_indices(font, text), font_file=str(font), font_size=p["font_size"],
                                opacity=p["opacity"], color=p["color"], x_pos=p["x_pos"], y_pos=p["y_pos"])
    return out.convert("RGB"), p, JPEG


def emoji(im, r):
    emojis = sorted((_assets() / "twemojis").rglob("*.png"))
    path = r.choice(emojis)
    p = {"emoji": path.stem, "emoji_size": round(r.uniform(0.15, 0.3), 3), "opacity": round(r.uniform(0.8, 1.0), 2),
         "x_pos": round(r.uniform(0.0, 0.7), 3), "y_pos": round(r.uniform(0.0, 0.7), 3)}
    out = _augly().overlay_emoji(im, emoji_path=str(path), emoji_size=p["emoji_size"], opacity=p["opacity"],
                                 x_pos=p["x_pos"], y_pos=p["y_pos"])
    return out.convert("RGB"), p, JPEG


def perspective(im, r):
    """A small tilt (as if photographed at an angle), on a plain backdrop: OpenCV warpPerspective."""
    a = _cv(im)
    h, w = a.shape[:2]
    s = r.uniform(0.03, 0.07)
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = np.float32([[r.uniform(-s, s) * w, r.uniform(-s, s) * h] for _ in range(4)])
    back = tuple(r.randrange(256) for _ in range(3))
    out = cv2.warpPerspective(a, cv2.getPerspectiveTransform(src, src + jitter), (w, h),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=back)
    return _pil(out), {"strength": round(s, 3)}, JPEG


def meme(im, r):
    """A white caption bar above the picture with black Impact text (AugLy's meme_format, redone)."""
    a = _cv(im)
    h, w = a.shape[:2]
    bar = int(h * r.uniform(0.15, 0.25))
    canvas = np.full((h + bar, w, 3), 255, np.uint8)
    canvas[bar:] = a
    out = _pil(canvas)
    text = r.choice(CAPTIONS)
    draw = ImageDraw.Draw(out)
    size = bar
    while size > 8:
        font = ImageFont.truetype(str(_assets() / "fonts" / "Impact.ttf"), size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= 0.92 * w and bottom - top <= 0.7 * bar:
            break
        size -= 2
    draw.text(((w - (right - left)) / 2 - left, (bar - (bottom - top)) / 2 - top), text, fill=(0, 0, 0), font=font)
    return out, {"caption": text, "bar": round(bar / h, 3)}, JPEG


def screenshot(im, r):
    """A phone screenshot of the picture in a gallery app: fitted to the screen's width, padded
    above and below, a status bar and a toolbar (OpenCV drawing, AugLy's Ubuntu font)."""
    width = r.choice((720, 1080))
    height = int(width * r.choice((16 / 9, 19.5 / 9, 20 / 9)))
    dark = r.random() < 0.6
    back, ink = ((0, 0, 0), (235, 235, 235)) if dark else ((250, 250, 250), (30, 30, 30))
    screen = np.full((height, width, 3), back, np.uint8)
    a = _cv(im)
    fit_h = int(a.shape[0] * width / a.shape[1])
    if fit_h > height * 0.8:  # a tall picture: fit the height instead
        fit_h = int(height * 0.8)
        fit_w = int(a.shape[1] * fit_h / a.shape[0])
    else:
        fit_w = width
    y0 = (height - fit_h) // 2 + int(r.uniform(-0.05, 0.05) * height)
    x0 = (width - fit_w) // 2
    screen[y0:y0 + fit_h, x0:x0 + fit_w] = cv2.resize(a, (fit_w, fit_h), interpolation=cv2.INTER_AREA)
    bar = int(width * 0.06)
    for k in range(4):  # toolbar: share, favourite, edit, delete
        cx = int(width * (0.14 + 0.24 * k))
        cv2.circle(screen, (cx, height - bar), int(bar * 0.3), ink[::-1], 2, cv2.LINE_AA)
    cv2.rectangle(screen, (int(width * 0.86), bar // 3), (int(width * 0.93), bar // 3 + bar // 3), ink[::-1], 2)
    out = _pil(screen)
    font = ImageFont.truetype(str(_assets() / "fonts" / "Ubuntu-M.ttf"), bar // 2)
    clock = f"{r.randint(7, 23)}:{r.randint(0, 59):02}"
    ImageDraw.Draw(out).text((int(width * 0.05), bar // 4), clock, fill=ink, font=font)
    return out, {"screen": [width, height], "dark": dark, "picture_fraction": round(fit_w * fit_h / (width * height), 3)}, {"format": "png"}


def social_screenshot(im, r):
    """AugLy's overlay_onto_screenshot: the picture as a post in a web or mobile social feed.
    Not in EDITS: the picture fills 15-25% of the frame and the feed's chrome is the same in every
    copy, so in a first full run no method found one of these copies (recall 0.00 for all) and
    DeepLens grouped the copies of different sources by pHash (352 of its 587 false pairs): it
    measured the template more than copy detection. Add it to EDITS to measure that case."""
    template = r.choice(("web.png", "mobile.png"))
    folder = _assets() / "screenshot_templates"
    out = _augly().overlay_onto_screenshot(im, template_filepath=str(folder / template),
                                           template_bboxes_filepath=str(folder / "bboxes.json"))
    return out.convert("RGB"), {"template": template}, {"format": "png"}


EDITS: dict[str, Edit] = {
    "jpeg_low": jpeg_low, "jpeg_mid": jpeg_mid, "downscale": downscale, "aspect": aspect,
    "color_jitter": color_jitter, "grayscale": grayscale, "blur": blur, "sharpen": sharpen, "noise": noise,
    "rot90": _turn(cv2.ROTATE_90_CLOCKWISE), "rot180": _turn(cv2.ROTATE_180),
    "rot270": _turn(cv2.ROTATE_90_COUNTERCLOCKWISE), "mirror": mirror,
    "rotate_small": rotate_small, "border": border, "crop_centre": crop_centre, "crop_offcentre": crop_offcentre,
    "text_overlay": text_overlay, "emoji": emoji, "perspective": perspective, "meme": meme, "screenshot": screenshot,
}
NEAR = ("jpeg_low", "jpeg_mid", "downscale", "aspect", "color_jitter", "grayscale", "blur", "sharpen", "noise",
        "rot90", "rot180", "rot270", "mirror")
TIER = {name: "near" if name in NEAR else "derived" for name in EDITS}


def encode(image: Image.Image, how: dict) -> tuple[bytes, str]:
    """File bytes and extension, written with OpenCV's encoders."""
    a = _cv(image)
    if how["format"] == "png":
        ok, data = cv2.imencode(".png", a)
        return data.tobytes(), "png"
    ok, data = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, int(how["quality"])])
    return data.tobytes(), "jpg"


def apply(name: str, image: Image.Image, seed: str) -> tuple[bytes, str, dict]:
    """Edit `image` with `name`, parameters drawn from `seed`; return file bytes, extension, parameters."""
    edited, params, how = EDITS[name](image, random.Random(f"{seed}:{name}"))
    data, ext = encode(edited, how)
    return data, ext, params
