"""Drawn scenes for bench/neardup2, a generator of its own: numpy value noise and OpenCV drawing
(not deeplens.samples.synthetic_image, not bench/neardup's gradient-and-shapes scenes).

Families: `landscape` (sky, sun, layered ridges, trees, clouds, lake), `city` (skyline with window
grids, road, cars), `mosaic` (stained glass: Voronoi cells with lead lines), `terrain` (a shaded
relief map with contour lines), `poster` (a flyer: background, shapes, headline in a font from
AugLy's assets) and `product` (one object on a studio background with a floor shadow).

Every scene is a function of three things:
- `style`: palette, layout, font (one `style_seed`): images drawn in one style share it;
- `content_seed`: what is where (ridges, buildings, cells, words, the object);
- `moment_seed`: what moves between two shots of one scene (clouds, lit windows, cars, grain).
Landscapes, cities, mosaics and terrains are drawn on a canvas larger than a picture, so that
two shots of one scene are two windows of one canvas.
"""

from __future__ import annotations

import colorsys
import random
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FAMILIES = ("landscape", "city", "mosaic", "terrain", "poster", "product")
CANVAS_FAMILIES = ("landscape", "city", "mosaic", "terrain")
PICTURE_SIZES = ((640, 480), (720, 540), (800, 600), (480, 640), (768, 512), (600, 600))
PRODUCT_KINDS = ("bottle", "mug", "box", "ball", "can", "vase")
WORDS = ("AUTUMN FAIR", "OPEN DAY", "JAZZ NIGHT", "BIG SALE", "NEW IN", "FARMERS MARKET", "RUN 10K", "BOOK CLUB",
         "YOGA", "GRAND OPENING", "FILM WEEK", "CRAFT BEER", "SUMMER CAMP", "CHARITY GALA", "TECH TALK",
         "FLEA MARKET", "CHOIR", "LAST CALL", "PIZZA", "WORKSHOP")
SMALL_WORDS = ("Saturday 10am", "free entry", "all welcome", "town hall", "tickets at the door", "since 1987",
               "limited offer", "live music", "kids go free", "main square", "rain or shine", "doors 7pm")
BRANDS = ("NORDA", "Kelpie", "VOLTA", "mira", "OAK&CO", "Pilu", "ZEST", "Arbor", "LUMEN", "tove")


def _augly_fonts() -> list[Path]:
    """Latin display and text fonts that ship with AugLy (a bench dependency)."""
    import augly.utils

    keep = ("Raleway", "Montserrat-", "OpenSans", "Chunkfive", "Lobster", "Pacifico", "Titillium", "Ubuntu-",
            "SourceSansPro", "PlayfairDisplay-", "Quicksand-", "LeagueSpartan", "Impact", "KaushanScript")
    fonts = sorted(p for p in Path(augly.utils.FONTS_DIR).glob("*.ttf") if p.name.startswith(keep))
    return fonts


# ------------------------------------------------------------------------------------- noise

def value_noise(h: int, w: int, rng: np.random.Generator, octaves: int = 5, base: int = 3,
                persistence: float = 0.5) -> np.ndarray:
    """Fractal value noise in [0, 1], (h, w) float32: random grids upsampled bicubically, summed."""
    out = np.zeros((h, w), np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        cells = base * 2 ** octave
        gh = max(2, round(cells * h / max(h, w)) + 2)
        gw = max(2, round(cells * w / max(h, w)) + 2)
        grid = rng.random((gh, gw), dtype=np.float32)
        out += amplitude * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= persistence
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def noise_1d(n: int, rng: np.random.Generator, octaves: int = 6, base: int = 3) -> np.ndarray:
    return value_noise(1, n, rng, octaves, base)[0] * 2 - 1


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur with a large sigma, done at a reduced scale (same look, a fraction of the time)."""
    h, w = mask.shape
    f = max(1.0, sigma / 4)
    small = cv2.resize(mask, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / f), (w, h), interpolation=cv2.INTER_LINEAR)


def _grain(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    noisy = image.astype(np.float32) + rng.normal(0, sigma, image.shape[:2] + (1,)).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _vgradient(h: int, w: int, top, bottom, curve: float = 1.0) -> np.ndarray:
    t = (np.linspace(0, 1, h, dtype=np.float32) ** curve)[:, None, None]
    col = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return np.repeat(col, w, axis=1)


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return tuple(int(x * (1 - t) + y * t) for x, y in zip(a, b))


# ------------------------------------------------------------------------------------ styles

def style_for(family: str, style_seed: int) -> dict:
    """The parameters that images drawn in one style share."""
    r = random.Random(f"style:{family}:{style_seed}")
    hue = r.random()
    if family == "landscape":
        evening = r.random() < 0.4
        return dict(sky_top=_hsv(hue * 0.2 + 0.55, 0.6, 0.85) if not evening else _hsv(0.7, 0.5, 0.35),
                    sky_bottom=_hsv(0.58, 0.15, 1.0) if not evening else _hsv(0.05 + r.random() * 0.06, 0.7, 1.0),
                    near=_hsv(0.25 + r.uniform(-0.12, 0.12), 0.6, 0.35), far_mix=r.uniform(0.55, 0.8),
                    layers=r.randint(3, 5), sun=(r.uniform(0.15, 0.85), r.uniform(0.12, 0.35)),
                    sun_radius=r.uniform(0.03, 0.07), lake=r.random() < 0.5, trees=r.randint(8, 40))
    if family == "city":
        mode = r.choice(("day", "dusk", "night"))
        sky = {"day": (_hsv(0.58, 0.55, 0.9), _hsv(0.56, 0.2, 1.0)),
               "dusk": (_hsv(0.72, 0.5, 0.45), _hsv(0.07, 0.75, 1.0)),
               "night": (_hsv(0.65, 0.7, 0.12), _hsv(0.62, 0.6, 0.3))}[mode]
        return dict(mode=mode, sky=sky, hue=hue, window=r.choice((6, 8, 10, 12)),
                    lit=_hsv(0.12 + r.uniform(-0.04, 0.04), 0.55, 1.0), lit_p=r.uniform(0.15, 0.6))
    if family == "mosaic":
        palette = [_hsv(hue + r.uniform(-0.15, 0.15) + k * r.choice((0.0, 0.33, 0.5)), r.uniform(0.45, 0.95),
                        r.uniform(0.45, 1.0)) for k in range(5)]
        return dict(palette=palette, cells=r.randint(40, 160), lead=r.randint(2, 6),
                    lead_colour=_hsv(hue, 0.3, r.uniform(0.05, 0.25)))
    if family == "terrain":
        return dict(cmap=r.choice(("terrain", "gist_earth", "cubehelix", "YlGnBu", "copper", "viridis", "BrBG")),
                    contours=r.choice((8, 12, 16, 24)), azimuth=r.uniform(0, 2 * np.pi), relief=r.uniform(1.0, 3.0),
                    grid=r.random() < 0.4)
    if family == "poster":
        fonts = _augly_fonts()
        return dict(background=_hsv(hue, r.uniform(0.2, 0.9), r.uniform(0.3, 1.0)),
                    accent=_hsv(hue + 0.5, r.uniform(0.5, 1.0), r.uniform(0.6, 1.0)),
                    ink=r.choice(((255, 255, 255), (20, 20, 20), _hsv(hue + 0.25, 0.8, 0.9))),
                    font=str(r.choice(fonts)), small_font=str(r.choice(fonts)),
                    layout=r.choice(("top", "bottom", "centre", "split")), shapes=r.choice(("circles", "bars", "tri")))
    if family == "product":
        return dict(back_top=_hsv(hue, r.uniform(0.0, 0.25), r.uniform(0.75, 1.0)),
                    back_bottom=_hsv(hue, r.uniform(0.0, 0.2), r.uniform(0.85, 1.0)),
                    light=r.uniform(-0.6, 0.6), scale=r.uniform(0.5, 0.75), horizon=r.uniform(0.55, 0.75))
    raise ValueError(family)


# ----------------------------------------------------------------------------------- families

def _landscape(w: int, h: int, style: dict, content: np.random.Generator, moment: np.random.Generator) -> np.ndarray:
    img = _vgradient(h, w, style["sky_top"], style["sky_bottom"], curve=0.8)
    sx, sy = int(style["sun"][0] * w), int(style["sun"][1] * h)
    radius = max(4, int(style["sun_radius"] * min(w, h) * 1.6))
    glow = np.zeros((h, w), np.float32)
    cv2.circle(glow, (sx, sy), radius * 3, 1.0, -1)
    glow = _soft(glow, radius * 1.5) * 0.35
    img = img + glow[..., None] * (np.array([255, 240, 200], np.float32) - img)
    cv2.circle(img, (sx, sy), radius, (255, 246, 220), -1, cv2.LINE_AA)
    clouds = np.zeros((h, w), np.float32)
    for _ in range(int(moment.integers(3, 9))):
        cx, cy = moment.uniform(0, w), moment.uniform(0.05, 0.4) * h
        for _ in range(int(moment.integers(3, 7))):
            ax, ay = moment.uniform(0.03, 0.09) * w, moment.uniform(0.02, 0.05) * h
            cv2.ellipse(clouds, (int(cx + moment.uniform(-1.5, 1.5) * ax), int(cy + moment.uniform(-0.6, 0.6) * ay)),
                        (int(ax), int(ay)), 0, 0, 360, 1.0, -1)
    clouds = _soft(clouds, 0.01 * w + 2) * 0.85
    img = img + clouds[..., None] * (np.array([250, 250, 252], np.float32) - img)
    layers = style["layers"]
    horizon = 0.62 if style["lake"] else 0.78
    xs = np.arange(w)
    ridge_tops = []
    for k in range(layers):
        t = k / max(1, layers - 1)
        base = h * (0.38 + (horizon - 0.38) * t)
        amplitude = h * (0.16 - 0.09 * t)
        ys = base + amplitude * noise_1d(w, content, octaves=6, base=2 + k)
        colour = _mix(style["near"], style["sky_bottom"], style["far_mix"] * (1 - t))
        pts = np.concatenate([np.stack([xs, ys], 1), [[w - 1, h - 1], [0, h - 1]]]).astype(np.int32)
        cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
        ridge_tops.append(ys)
    tree_colour = _mix(style["near"], (10, 20, 10), 0.55)
    front = ridge_tops[-1]
    for _ in range(style["trees"]):
        x = int(content.uniform(0, w))
        y = int(front[x] + content.uniform(0, 0.08) * h)
        th = int(content.uniform(0.05, 0.12) * h)
        tw = int(th * content.uniform(0.3, 0.45))
        cv2.fillPoly(img, [np.array([[x, y - th], [x - tw, y], [x + tw, y]], np.int32)], tree_colour, cv2.LINE_AA)
        cv2.line(img, (x, y), (x, y + th // 6), (60, 40, 30), max(1, tw // 4))
    if style["lake"]:
        top = int(h * horizon + h * 0.06)
        above = img[max(0, 2 * top - h):top][::-1]
        water = cv2.resize(above, (w, h - top)) * np.array([0.75, 0.82, 0.9], np.float32)
        ripples = value_noise(h - top, w, content, octaves=3, base=2)
        shift = ((ripples - 0.5) * 0.02 * w).astype(np.float32)
        mapx = (np.arange(w, dtype=np.float32)[None, :] + shift)
        mapy = np.repeat(np.arange(h - top, dtype=np.float32)[:, None], w, 1)
        img[top:] = cv2.remap(water, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        cv2.line(img, (0, top), (w, top), _mix(style["sky_bottom"], (255, 255, 255), 0.5), 2)
    return _grain(img, moment, 3.0)


def _city(w: int, h: int, style: dict, content: np.random.Generator, moment: np.random.Generator) -> np.ndarray:
    img = _vgradient(h, w, *style["sky"], curve=1.2)
    ground = int(h * content.uniform(0.8, 0.88))
    night = style["mode"] == "night"
    if night:
        for _ in range(int(w * h / 4000)):
            cv2.circle(img, (int(moment.uniform(0, w)), int(moment.uniform(0, ground * 0.6))), 1, (230, 230, 255), -1)
    far = _mix(style["sky"][1], (40, 40, 60), 0.45)
    x = 0
    while x < w:
        bw = int(content.uniform(0.03, 0.08) * w) + 4
        top = int(ground - content.uniform(0.25, 0.55) * h)
        cv2.rectangle(img, (x, top), (x + bw, ground), far, -1)
        x += bw
    x = int(-content.uniform(0, 0.05) * w)
    while x < w:
        bw = int(content.uniform(0.05, 0.14) * w) + 8
        top = int(ground - content.uniform(0.2, 0.75) * h)
        shade = content.uniform(0.25, 0.7) if not night else content.uniform(0.08, 0.2)
        colour = _hsv(style["hue"] + content.uniform(-0.08, 0.08), content.uniform(0.05, 0.35), shade)
        cv2.rectangle(img, (x, top), (x + bw, ground), colour, -1)
        cell = style["window"] + int(content.integers(0, 4))
        for wy in range(top + cell, ground - cell, cell * 2):
            for wx in range(x + cell // 2, x + bw - cell, int(cell * 1.6)):
                lit = moment.random() < style["lit_p"] if night or style["mode"] == "dusk" else moment.random() < 0.1
                wc = style["lit"] if lit else _mix(colour, (20, 25, 35) if night else (150, 180, 210), 0.5)
                cv2.rectangle(img, (wx, wy), (wx + cell // 2 + 1, wy + cell), wc, -1)
        if content.random() < 0.25:
            cv2.line(img, (x + bw // 2, top), (x + bw // 2, top - int(0.06 * h)), colour, 2)
        x += bw + int(content.integers(0, 6))
    img[ground:] = _vgradient(h - ground, w, (70, 70, 75) if not night else (25, 25, 30), (40, 40, 45) if not night else (12, 12, 15))
    lane = ground + (h - ground) // 2
    for lx in range(int(-content.uniform(0, 60)), w, 60):
        cv2.line(img, (lx, lane), (lx + 30, lane), (230, 220, 120), 3)
    for _ in range(int(moment.integers(1, 6))):
        cx = int(moment.uniform(0, w))
        cy = int(lane + moment.choice((-1, 1)) * (h - ground) * 0.22)
        cw, ch = int(0.07 * w), int(0.035 * h) + 3
        colour = _hsv(moment.random(), 0.7, 0.8)
        cv2.rectangle(img, (cx, cy - ch), (cx + cw, cy), colour, -1)
        cv2.rectangle(img, (cx + cw // 5, cy - 2 * ch + ch // 3), (cx + 4 * cw // 5, cy - ch), _mix(colour, (0, 0, 0), 0.3), -1)
        for wx in (cx + cw // 5, cx + 4 * cw // 5):
            cv2.circle(img, (wx, cy), max(2, ch // 3), (15, 15, 15), -1)
    return _grain(img, moment, 2.5 if not night else 5.0)


def _mosaic(w: int, h: int, style: dict, content: np.random.Generator, moment: np.random.Generator) -> np.ndarray:
    from scipy.spatial import cKDTree

    n = int(style["cells"] * (w * h) / (640 * 480))
    points = np.column_stack([content.uniform(0, w, n), content.uniform(0, h, n)])
    small = 4  # labels at a quarter of the size, upscaled: jagged edges are covered by the lead lines
    ys, xs = np.mgrid[0:h:small, 0:w:small]
    _, labels = cKDTree(points).query(np.column_stack([xs.ravel(), ys.ravel()]))
    labels = cv2.resize(labels.reshape(xs.shape).astype(np.int32).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_NEAREST).astype(np.int32)
    palette = np.array(style["palette"], np.float32)
    colours = palette[content.integers(0, len(palette), n)] * content.uniform(0.7, 1.15, (n, 1))
    img = colours[labels]
    texture = value_noise(h, w, content, octaves=4, base=6)
    img = img * (0.8 + 0.4 * texture[..., None])
    edges = np.zeros((h, w), np.uint8)
    edges[:, 1:] |= (labels[:, 1:] != labels[:, :-1]).astype(np.uint8)
    edges[1:, :] |= (labels[1:, :] != labels[:-1, :]).astype(np.uint8)
    edges = cv2.dilate(edges, np.ones((style["lead"], style["lead"]), np.uint8))
    img[edges > 0] = style["lead_colour"]
    light = np.zeros((h, w), np.float32)
    cv2.circle(light, (int(moment.uniform(0, w)), int(moment.uniform(0, h))), int(0.4 * max(w, h)), 1.0, -1)
    light = _soft(light, 0.15 * max(w, h)) * 0.25
    img = img * (0.9 + light[..., None])
    return _grain(np.clip(img, 0, 255), moment, 2.0)


def _terrain(w: int, h: int, style: dict, content: np.random.Generator, moment: np.random.Generator) -> np.ndarray:
    import matplotlib

    height = value_noise(h, w, content, octaves=6, base=2, persistence=0.45)
    gy, gx = np.gradient(height * style["relief"] * 100)
    az = style["azimuth"]
    shade = np.clip(0.6 + 0.4 * (np.cos(az) * gx + np.sin(az) * gy) / (1 + np.hypot(gx, gy)), 0.2, 1.2)
    colours = matplotlib.colormaps[style["cmap"]](height)[..., :3].astype(np.float32) * 255
    img = colours * shade[..., None]
    levels = np.floor(height * style["contours"]).astype(np.int32)
    lines = np.zeros((h, w), np.uint8)
    lines[:, 1:] |= (levels[:, 1:] != levels[:, :-1]).astype(np.uint8)
    lines[1:, :] |= (levels[1:, :] != levels[:-1, :]).astype(np.uint8)
    img[lines > 0] *= 0.55
    if style["grid"]:
        step = 96
        for gx_ in range(0, w, step):
            cv2.line(img, (gx_, 0), (gx_, h), (240, 240, 240), 1)
        for gy_ in range(0, h, step):
            cv2.line(img, (0, gy_), (w, gy_), (240, 240, 240), 1)
    return _grain(np.clip(img, 0, 255), moment, 1.5)


def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, max(8, size))


def _poster(w: int, h: int, style: dict, content: np.random.Generator, moment: np.random.Generator) -> np.ndarray:
    img = np.full((h, w, 3), style["background"], np.float32)
    if style["layout"] == "split":
        cv2.fillPoly(img, [np.array([[0, h], [w, int(h * content.uniform(0.3, 0.7))], [w, h]], np.int32)],
                     _mix(style["background"], (0, 0, 0), 0.35))
    for _ in range(int(content.integers(3, 9))):
        cx, cy = int(content.uniform(0, w)), int(content.uniform(0, h))
        size = int(content.uniform(0.05, 0.25) * min(w, h))
        colour = _mix(style["accent"], style["background"], content.uniform(0, 0.5))
        if style["shapes"] == "circles":
            cv2.circle(img, (cx, cy), size, colour, -1, cv2.LINE_AA)
        elif style["shapes"] == "bars":
            cv2.rectangle(img, (cx - size * 2, cy - size // 4), (cx + size * 2, cy + size // 4), colour, -1)
        else:
            cv2.fillPoly(img, [np.array([[cx, cy - size], [cx - size, cy + size], [cx + size, cy + size]], np.int32)],
                         colour, cv2.LINE_AA)
    image = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    words = WORDS[int(content.integers(len(WORDS)))].split()
    size = int(min(w / (0.62 * max(len(x) for x in words) + 1), h / (1.5 * len(words) + 2)))
    font = _font(style["font"], size)
    y0 = {"top": 0.08, "bottom": 0.42, "centre": 0.3, "split": 0.12}[style["layout"]] * h
    for k, word in enumerate(words):
        draw.text((w * 0.07, y0 + k * size * 1.15), word, fill=style["ink"], font=font)
    small = _font(style["small_font"], int(size * 0.32))
    y = y0 + len(words) * size * 1.2 + size * 0.2
    for _ in range(int(content.integers(1, 4))):
        draw.text((w * 0.08, y), SMALL_WORDS[int(content.integers(len(SMALL_WORDS)))], fill=style["ink"], font=small)
        y += size * 0.42
    return _grain(np.asarray(image), moment, 1.5)


def _product_mask_and_shade(kind: str, w: int, h: int, style: dict, content: np.random.Generator):
    """The object's mask (uint8) and a shading field in [0, 1.2] (float32), on a (h, w) frame."""
    mask = np.zeros((h, w), np.uint8)
    cx = w / 2 + content.uniform(-0.05, 0.05) * w
    floor = h * style["horizon"] + h * 0.12
    height = h * style["scale"] * content.uniform(0.85, 1.1)
    width = height * {"bottle": 0.32, "mug": 0.8, "box": 0.75, "ball": 1.0, "can": 0.55, "vase": 0.55}[kind] * content.uniform(0.85, 1.15)
    top = floor - height
    left, right = cx - width / 2, cx + width / 2
    if kind == "bottle":
        neck = width * 0.32
        shoulder = top + height * 0.35
        pts = [(left, floor), (left, shoulder), (cx - neck / 2, top + height * 0.15), (cx - neck / 2, top),
               (cx + neck / 2, top), (cx + neck / 2, top + height * 0.15), (right, shoulder), (right, floor)]
        cv2.fillPoly(mask, [np.array(pts, np.int32)], 255, cv2.LINE_AA)
    elif kind in ("mug", "can"):
        body_right = right - (width * 0.25 if kind == "mug" else 0)
        cv2.rectangle(mask, (int(left), int(top)), (int(body_right), int(floor)), 255, -1)
        rx = (body_right - left) / 2
        cv2.ellipse(mask, (int((left + body_right) / 2), int(floor)), (int(rx), int(rx * 0.25)), 0, 0, 360, 255, -1)
        if kind == "mug":
            cv2.ellipse(mask, (int(body_right), int(top + height * 0.45)), (int(width * 0.22), int(height * 0.22)),
                        0, -90, 90, 255, max(3, int(width * 0.07)), cv2.LINE_AA)
    elif kind == "box":
        depth = width * 0.3
        front = [(left, floor), (left, top + depth), (right - depth, top + depth), (right - depth, floor)]
        cv2.fillPoly(mask, [np.array(front, np.int32)], 255)
        cv2.fillPoly(mask, [np.array([(left, top + depth), (left + depth, top), (right, top), (right - depth, top + depth)], np.int32)], 255)
        cv2.fillPoly(mask, [np.array([(right - depth, top + depth), (right, top), (right, floor - depth), (right - depth, floor)], np.int32)], 255)
    elif kind == "ball":
        r = width / 2
        cv2.circle(mask, (int(cx), int(floor - r)), int(r), 255, -1, cv2.LINE_AA)
    elif kind == "vase":
        ys = np.linspace(top, floor, 40)
        t = (ys - top) / height
        half = width / 2 * (0.35 + 0.65 * np.sin(np.pi * (0.15 + 0.8 * t)) ** 1.5)
        pts = np.concatenate([np.stack([cx - half, ys], 1), np.stack([cx + half, ys], 1)[::-1]])
        cv2.fillPoly(mask, [pts.astype(np.int32)], 255, cv2.LINE_AA)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = np.clip((xx - left) / max(width, 1), 0, 1)
    light = 0.5 + style["light"] * 0.5
    if kind == "ball":
        r = width / 2
        nx, ny = (xx - cx) / r, (yy - (floor - r)) / r
        nz = np.sqrt(np.clip(1 - nx ** 2 - ny ** 2, 0, 1))
        shade = 0.25 + 0.85 * np.clip(nx * style["light"] - ny * 0.5 + nz * 0.7, 0, 1.2)
    elif kind == "box":
        shade = np.where(xx > right - width * 0.3, 0.6, 1.0).astype(np.float32)
        shade = np.where(yy < top + width * 0.3 - (xx - left) * 0.0, 1.15, shade)
    else:
        shade = 0.35 + 0.8 * np.exp(-((u - light) ** 2) / 0.08)
    return mask, shade.astype(np.float32), (left, top, right, floor)


def _product(w: int, h: int, style: dict, content: np.random.Generator, moment: np.random.Generator,
             kind: str | None = None) -> np.ndarray:
    img = _vgradient(h, w, style["back_top"], style["back_bottom"], curve=1.5)
    kind = kind or PRODUCT_KINDS[int(content.integers(len(PRODUCT_KINDS)))]
    mask, shade, (left, top, right, floor) = _product_mask_and_shade(kind, w, h, style, content)
    shadow = np.zeros((h, w), np.float32)
    cv2.ellipse(shadow, (int((left + right) / 2 - style["light"] * (right - left) * 0.4), int(floor)),
                (int((right - left) * 0.65), int((right - left) * 0.12) + 3), 0, 0, 360, 1.0, -1)
    shadow = _soft(shadow, 0.02 * w + 2) * 0.45
    img *= (1 - shadow[..., None])
    base = np.array(_hsv(content.random(), content.uniform(0.3, 0.9), content.uniform(0.45, 0.95)), np.float32)
    obj = np.clip(base[None, None] * shade[..., None], 0, 255)
    alpha = (mask.astype(np.float32) / 255)[..., None]
    img = img * (1 - alpha) + obj * alpha
    if kind in ("bottle", "can", "box", "mug") and content.random() < 0.8:
        lw, lh = (right - left) * 0.6, (floor - top) * 0.22
        lx, ly = (left + right) / 2 - lw / 2 - (right - left) * (0.12 if kind == "box" else 0), top + (floor - top) * 0.5
        label = _hsv(content.random(), 0.2, 0.95)
        cv2.rectangle(img, (int(lx), int(ly)), (int(lx + lw), int(ly + lh)), label, -1)
        image = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        fonts = _augly_fonts()
        font = _font(str(fonts[int(content.integers(len(fonts)))]), int(lh * 0.55))
        ImageDraw.Draw(image).text((lx + lw * 0.08, ly + lh * 0.18), BRANDS[int(content.integers(len(BRANDS)))],
                                   fill=(30, 30, 30), font=font)
        img = np.asarray(image).astype(np.float32)
    return _grain(np.clip(img, 0, 255), moment, 2.0)


RENDER = {"landscape": _landscape, "city": _city, "mosaic": _mosaic, "terrain": _terrain, "poster": _poster,
          "product": _product}


def render(family: str, size: tuple[int, int], style: dict, content_seed: int, moment_seed: int, **kw) -> Image.Image:
    """One drawn picture (or canvas) of the given size (w, h)."""
    w, h = size
    content = np.random.default_rng([content_seed, 1])
    moment = np.random.default_rng([moment_seed, 2])
    array = RENDER[family](w, h, style, content, moment, **kw)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
