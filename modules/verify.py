"""Geometric verification: is image B the same picture as image A after a crop, a border, a
watermark or a small rotation? Embedding distance only says "the same kind of picture"; this
checks that local features of the two line up under one similarity transform.

Method: ORB keypoints (OpenCV) on the grayscale images, Hamming matching with Lowe's ratio test,
then a RANSAC fit of a partial affine transform (rotation, uniform scale, translation) with
`cv2.estimateAffinePartial2D`. ORB was chosen over AKAZE after trying both on 256 px thumbnails:
the same separation of copies from look-alikes at a third of the time. ORB descriptors are not
mirror invariant, so a pair that fails can be tried once more with B mirrored (duplicate grouping
leaves that out: mirrored copies are pHash matches there, and look-alike pairs would cost twice).

Verified when enough matches agree (MIN_INLIERS and MIN_INLIER_RATIO), the scale is sane, one
frame lies within the other (MAX_OVERHANG, MAX_CONTENT_OVERHANG), the matched region covers a
real part of the smaller image (a shared logo or a patch of texture covers little), and, where
both images are in colour, the aligned pictures agree in hue (see MAX_HUE_DISAGREEMENT), in studio
shots also where the object is (see BACKDROP_SHARE), and, in studio shots, the object's print and
shading agree (see MIN_OBJECT_INLIER_SHARE). The geometric settings were chosen on the tune split
of bench/neardup alone (450 edited copies against their originals, 5,834 pairs of different
images): 449 copies verified, no pair of different images (one drawn-scene pair reached 12
inliers, hence 13); about 1.3 ms an image for the features and 1.3 ms a pair on one core, at 256
px. The colour rules were chosen on the tune splits of bench/neardup and bench/neardup2
(bench/RESULTS.md), the object rule too; they decode both images again, only for pairs whose
geometry holds. The evidence says how: inliers, ratio, rotation, scale,
mirror, where A lies inside B and B inside A (boxes as fractions of the other's width and height),
the overhangs, the hues, and the object's agreement.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from functools import lru_cache
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from deeplens.modules.images import content_box, open_image

ORB_FEATURES = 1000
FAST_THRESHOLD = 7  # OpenCV's default 20 finds too few corners in flat drawn images and 256 px thumbnails
RATIO_TEST = 0.75  # Lowe's ratio: a match must be clearly better than the second best
RANSAC_PIXELS = 4.0  # reprojection error allowed for an inlier, in pixels of B
MIN_INLIERS = 13
MIN_INLIER_RATIO = 0.3
MIN_COVERAGE = 0.05  # share of the smaller image spanned by the inliers (ORB finds no keypoints within 31 px of an edge)
# Copies are shown at some size and, at most, turned by a right angle plus a little: a fit with an
# odd angle or a tiny scale is RANSAC agreeing on a repeated pattern, not a copy.
SCALE_RANGE = (1 / 3, 3.0)
MAX_TILT_DEG = 15.0  # off the nearest multiple of 90 degrees
# A copy's frame lies within its source's (a crop) or around it (a border): one of the two mapped
# frames sticks out of the other by little (a 5 degree turn: about 0.06 of the side). Two shots of
# one scene, or two windows of one picture, overlap only in part: both stick out far.
MAX_OVERHANG = 0.1
# The same taken between the pictures inside the frames' uniform bars (images.content_box): a
# bordered copy's frame has room around its picture, so a different shot of the scene, shifted by
# up to the border's width, passes the rule above. Looser, because the bars found are not always
# the same in two copies (a studio backdrop trimmed in one copy, not in its noisy copy). Chosen on
# the tune split of bench/neardup2 (bench/RESULTS.md): source ~ copy pairs reach 0.17, exposure
# look-alikes against bordered and screenshot copies 0.22-0.30.
MAX_CONTENT_OVERHANG = 0.2
VERIFY_SIZE = 256  # longest side the images are compared at: the size of the stored thumbnails
# A copy keeps its colours. Different products shot in one studio (the same backdrop, light and
# framing; bench/neardup2's product look-alikes and families) line up under one transform on the
# backdrop, the floor shadow and similar outlines, but differ in colour. After the fit, both images
# are smoothed (HUE_BLUR: misalignment of a perspective or aspect change) and, over the pixels
# where both are coloured (chroma of HSV, S*V/255, at least MIN_CHROMA), the share whose hues
# differ by more than HUE_TOLERANCE_DEG is the disagreement. Chosen on the tune splits' verified
# candidate pairs (bench/RESULTS.md): copies against their source reach 0.15 (perspective), two
# copies of one source 0.16 at their 99th percentile; two products of different colours on one
# backdrop mostly 1.0. It does not tell two products of one colour apart. Greyscale copies have no
# colour to compare and are left to the geometry.
MAX_HUE_DISAGREEMENT = 0.4
HUE_BLUR = 4.0  # pixels (sigma) at VERIFY_SIZE
MIN_CHROMA = 25
HUE_TOLERANCE_DEG = 30
MIN_COLOURED = 0.02  # share of the overlap both must colour for the hues to count
# Studio shots (an object on a smooth backdrop): the backdrop is most of the coloured area, so two
# different objects on one backdrop agree in hue overall. Where a smooth colour surface explains at
# least BACKDROP_SHARE of the overlap in either image (within BACKDROP_DISTANCE), the hues are also
# compared over the pixels both show in front of their backdrops (FOREGROUND_DISTANCE and more from
# it), and the larger disagreement counts. Either, not both: where one shows the object larger, the
# overlap is mostly object and shadow in that one. Chosen on the tune split of bench/neardup2
# (bench/RESULTS.md): of the 14 verified pairs of two product sources that "both" left out, "either"
# rejects 10 at the cost of no source ~ copy pair and 14 of 4,513 copy ~ copy pairs; "both" at 0.4
# rejects as many and loses 73 true pairs, and 12-13 cost 69-163 (0.3 for both, "either" at 0.5, the
# object rule on every pair).
BACKDROP_SHARE = 0.6
BACKDROP_DISTANCE = 20  # RGB distance
FOREGROUND_DISTANCE = 30
# Studio shots again: two different objects of one shape in one studio (a can and a mug, the same
# colour or one copy in grey) line up on their outlines, but not on their print and shading. A
# copy shows the same object: most of the features where both show it are inliers, or, aligned,
# the two agree in grey level there (normalised correlation, smoothed by OBJECT_BLUR). A pair is
# rejected when both fall short. Chosen on the tune splits of bench/neardup2 and bench/neardup
# (bench/RESULTS.md): no source ~ copy pair falls short of both (the one below 0.2 correlates at
# 0.996; those below 0.95 keep shares of 0.25 and more); 277 of the 284 pairs of different products
# do (correlations up to 0.93 where the share is below 0.2), the other 7 differ in colour.
MIN_OBJECT_INLIER_SHARE = 0.2
MIN_OBJECT_CORRELATION = 0.95
OBJECT_BLUR = 1.5  # pixels (sigma) at VERIFY_SIZE
MIN_OBJECT_PIXELS = 50  # where both show the object, for the rule to apply



@dataclass(frozen=True)
class Verification:
    verified: bool
    inliers: int
    matches: int
    inlier_ratio: float
    coverage: float  # of the smaller image, by the inliers' bounding box
    rotation_deg: float | None = None
    scale: float | None = None  # B's size over A's
    mirror: bool = False
    a_in_b: list[float] | None = None  # A's frame mapped into B: [x0, y0, x1, y1] as fractions of B
    b_in_a: list[float] | None = None  # and B's frame in A
    # Which one is the edited copy, where the geometry tells: the one inside the other is a crop,
    # unless the other's margin around it is uniform: then that other one is a bordered copy.
    derived: str | None = None  # "a", "b", or None (same frame: watermark, small rotation, ...)
    overhang: float | None = None  # how far the better contained frame sticks out of the other (fraction)
    content_overhang: float | None = None  # between the pictures inside the bars; None if the geometry failed
    # Of the overlap's pixels coloured in both, the share whose hues disagree (see
    # MAX_HUE_DISAGREEMENT); None where the geometry failed or one image has too little colour.
    hue_disagreement: float | None = None
    # Studio shots (see MIN_OBJECT_INLIER_SHARE), where both show the object: the share of the
    # features that are inliers, and the grey-level correlation; None unless one of the two is a
    # studio shot and both show the object (MIN_OBJECT_PIXELS).
    object_inlier_share: float | None = None
    object_correlation: float | None = None

    def as_json(self) -> dict:
        return dict(vars(self))  # the fields in order; asdict's deep copy took a fifth of a rejected pair's time


class Keypoints:
    """One image ready to be matched: its ORB features, found once however many pairs it is part
    of; the features of its mirror image only when a pair needs them. The pixels are not kept (a
    cached image would hold them for nothing): the pairs that need them (a geometric fit that
    holds, for the colours and to tell which side is edited; a mirrored retry) decode them again."""

    def __init__(self, gray: np.ndarray, decode_rgb: Callable[[], np.ndarray]):
        self.shape = gray.shape
        keys, self.desc = _features(gray)
        self.points = np.float32([key.pt for key in keys]).reshape(-1, 2)
        self._decode_rgb = decode_rgb
        self._mirrored: Keypoints | None = None

    @classmethod
    def of(cls, data: bytes, max_pixels: int) -> Keypoints:
        """Raises BadImage (from decoding) when the bytes are not a usable image."""
        def decode() -> Image.Image:  # RGB (open_image)
            image = open_image(data, max_pixels, draft_to=VERIFY_SIZE, fit=True).image
            image.thumbnail((VERIFY_SIZE, VERIFY_SIZE), Image.Resampling.LANCZOS)
            return image

        def decode_rgb() -> np.ndarray:
            return np.asarray(decode().convert("RGB"))

        # The grey straight from the decoded image: the same pixels as _gray(decode_rgb()), without
        # the copies to an RGB array and back (a fifth of an image's cost at 256 px).
        return cls(np.asarray(decode().convert("L")), decode_rgb)

    @property
    def rgb(self) -> np.ndarray:
        return self._decode_rgb()

    def mirrored(self) -> Keypoints:
        if self._mirrored is None:  # two threads may both compute it: the same result, no harm
            def decode_rgb() -> np.ndarray:
                return np.ascontiguousarray(self.rgb[:, ::-1])

            self._mirrored = Keypoints(_gray(decode_rgb()), decode_rgb)
        return self._mirrored


class KeypointCache:
    """The features of the images verified lately, by a digest of their bytes. In a grouping run an
    image is a candidate of several others and comes back in several calls; finding its features
    costs about eight times as much as matching a pair that fails. Bounded: about 50 KB an image
    (ORB descriptors, points, and the image bytes, decoded again for the colours of a pair whose
    geometry holds and for a mirrored retry)."""

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[bytes, Keypoints] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, data: bytes, max_pixels: int) -> tuple[Keypoints, bool]:
        """The image's features, and whether they came from the cache."""
        key = hashlib.blake2b(data, digest_size=16).digest()
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found, True
        made = Keypoints.of(data, max_pixels)  # outside the lock: decode threads work in parallel
        with self._lock:
            self._entries[key] = made
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return made, False


def _gray(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))  # Pillow's luma, as the features were tuned on


_detectors = threading.local()


def _features(gray: np.ndarray):
    # One ORB detector per thread, kept: creating one costs a third as much as using it at 256 px,
    # and detectAndCompute keeps nothing from one image to the next.
    detector = getattr(_detectors, "orb", None)
    if detector is None:
        detector = _detectors.orb = cv2.ORB_create(nfeatures=ORB_FEATURES, fastThreshold=FAST_THRESHOLD)
    return detector.detectAndCompute(gray, None)


def verify(a: Keypoints, b: Keypoints, mirror: bool = True) -> Verification:
    """Whether b is a geometric copy of a (crop, border, small rotation, overlay), with the evidence.
    mirror: when the fit fails, try b mirrored (about twice the cost of a rejected pair)."""
    result = _fit(a, b, mirror=False)
    if mirror and not result.verified:
        mirrored = _fit(a, b.mirrored(), mirror=True)
        if mirrored.verified or mirrored.inliers > result.inliers:
            result = mirrored
    return result


def _fit(a: Keypoints, b: Keypoints, mirror: bool) -> Verification:
    if a.desc is None or b.desc is None or len(a.points) < 2 or len(b.points) < 2:
        return Verification(False, 0, 0, 0.0, 0.0, mirror=mirror)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.desc, b.desc, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO_TEST * p[1].distance]
    if len(good) < 3:
        return Verification(False, 0, len(good), 0.0, 0.0, mirror=mirror)
    points_a = a.points[[m.queryIdx for m in good]]
    points_b = b.points[[m.trainIdx for m in good]]
    transform, mask = cv2.estimateAffinePartial2D(
        points_a, points_b, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS
    )
    if transform is None:
        return Verification(False, 0, len(good), 0.0, 0.0, mirror=mirror)
    inlier = mask.ravel().astype(bool)
    inliers = int(inlier.sum())
    scale = float(math.hypot(transform[0, 0], transform[1, 0]))
    rotation = math.degrees(math.atan2(transform[1, 0], transform[0, 0]))
    coverage = _coverage(points_a[inlier], a.shape, points_b[inlier], b.shape)
    box = _box(transform, a.shape, b.shape, mirror)
    inverse = cv2.invertAffineTransform(transform)  # B's frame is symmetric, so mirroring does not matter
    box_in_a = _box(inverse, b.shape, a.shape, False)
    overhang = min(_overhang(box), _overhang(box_in_a))
    verified = (
        overhang <= MAX_OVERHANG
        and inliers >= MIN_INLIERS
        and inliers / len(good) >= MIN_INLIER_RATIO
        and SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]
        and abs((rotation + 45) % 90 - 45) <= MAX_TILT_DEG
        and coverage >= MIN_COVERAGE
    )
    derived = hue = content_overhang = share = correlation = None
    if verified:  # the geometry holds: now the pixels are worth decoding
        rgb_a, rgb_b = a.rgb, b.rgb  # b mirrored where the fit was: the content boxes are in the fit's frames
        content_a, content_b = content_box(Image.fromarray(rgb_a)), content_box(Image.fromarray(rgb_b))
        content_overhang = min(_overhang(_mapped(transform, content_a, content_b)),
                               _overhang(_mapped(inverse, content_b, content_a)))
        pair = _Aligned.of((rgb_a, a.points, points_a[inlier]), (rgb_b, b.points, points_b[inlier]),
                           transform, inverse, scale)
        hue = _hue_disagreement(pair)
        share, correlation = _object_agreement(pair)
        verified = (content_overhang <= MAX_CONTENT_OVERHANG and (hue is None or hue <= MAX_HUE_DISAGREEMENT)
                    and (share is None or share >= MIN_OBJECT_INLIER_SHARE or correlation >= MIN_OBJECT_CORRELATION))
    if verified and _inside(box):
        derived = "b" if _uniform_margin(_gray(rgb_b), box, mirror) else "a"
    elif verified and _inside(box_in_a):
        derived = "a" if _uniform_margin(_gray(rgb_a), box_in_a, False) else "b"
    return Verification(verified, inliers, len(good), round(inliers / len(good), 3), round(coverage, 3),
                        round(rotation, 2), round(scale, 3), mirror, box, box_in_a, derived,
                        round(overhang, 3), None if content_overhang is None else round(content_overhang, 3),
                        *(None if value is None else round(value, 3) for value in (hue, share, correlation)))


@dataclass
class _Aligned:
    """A pair whose geometry holds, in the frame of the image that shows the picture smaller (so
    that neither is judged on detail the other lacks): that image (`fixed`), the other warped onto
    it (`moved`), where the other covers it (`inside`), where both show something in front of a
    smooth backdrop (`objects`, see BACKDROP_SHARE: nowhere unless one is a studio shot), and the
    features of each and the inliers, as points of the fixed frame."""

    fixed: np.ndarray
    moved: np.ndarray
    inside: np.ndarray
    objects: np.ndarray
    fixed_points: np.ndarray
    moved_points: np.ndarray
    inliers: np.ndarray

    @classmethod
    def of(cls, a: tuple[np.ndarray, np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray, np.ndarray],
           transform: np.ndarray, inverse: np.ndarray, scale: float) -> _Aligned:
        """a, b: each image's pixels, features and inliers (points of its own frame)."""
        if scale >= 1:  # B shows the picture larger: B into A
            (fixed_rgb, fixed_points, inliers), (moving_rgb, moving_points, _), warp = a, b, inverse
        else:
            (fixed_rgb, fixed_points, inliers), (moving_rgb, moving_points, _), warp = b, a, transform
        height, width = fixed_rgb.shape[:2]
        moved = cv2.warpAffine(moving_rgb, warp, (width, height), flags=cv2.INTER_AREA)
        inside = cv2.warpAffine(np.ones(moving_rgb.shape[:2], np.uint8), warp, (width, height),
                                flags=cv2.INTER_NEAREST)
        inside = cv2.erode(inside, np.ones((7, 7), np.uint8)) > 0  # off the resampled edge
        terms = _quadratic_terms(height, width)
        (backdrop_fixed, front_fixed), (backdrop_moved, front_moved) = (_foreground(rgb, inside, terms)
                                                                        for rgb in (fixed_rgb, moved))
        if max(backdrop_fixed, backdrop_moved) >= BACKDROP_SHARE:
            objects = front_fixed & front_moved
        else:
            objects = np.zeros_like(inside)
        return cls(fixed_rgb, moved, inside, objects, fixed_points, moving_points @ warp[:, :2].T + warp[:, 2],
                   inliers)


def _hue_disagreement(pair: _Aligned) -> float | None:
    """Of the pixels both images colour where they overlap, the share whose hues differ by more than
    HUE_TOLERANCE_DEG; None when too few pixels are coloured in both (a greyscale copy)."""
    hue_fixed, coloured_fixed = _hue_and_colour(pair.fixed)
    hue_moved, coloured_moved = _hue_and_colour(pair.moved)
    both = pair.inside & coloured_fixed & coloured_moved
    enough = MIN_COLOURED * max(int(pair.inside.sum()), 1)
    if both.sum() < enough:
        return None
    difference = np.abs(hue_fixed - hue_moved)
    disagree = np.minimum(difference, 256 - difference) * 360 / 256 > HUE_TOLERANCE_DEG  # hue is circular
    overall = float(disagree[both].mean())
    objects = both & pair.objects
    if objects.sum() < enough:  # neither a studio shot, or no coloured object in both
        return overall
    return max(overall, float(disagree[objects].mean()))


def _object_agreement(pair: _Aligned) -> tuple[float | None, float | None]:
    """Where both show an object in front of the backdrop, one of them a studio shot (see
    MIN_OBJECT_INLIER_SHARE): the share of the features there that are inliers (of the image with
    fewer; the outline's features taken in by a few pixels), and the grey levels' normalised
    correlation (the outline left out by a few pixels: a slight misalignment there says nothing).
    (None, None) when neither is a studio shot or their objects share too few pixels."""
    core = cv2.erode(pair.objects.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if core.sum() <= MIN_OBJECT_PIXELS:
        return None, None
    height, width = pair.objects.shape
    near = (cv2.dilate(pair.objects.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) & pair.inside

    def on_object(points: np.ndarray) -> int:
        x, y = np.round(points).astype(int).T
        within = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        return int(near[y[within], x[within]].sum())

    features = min(on_object(pair.fixed_points), on_object(pair.moved_points))
    # At most 1: without a cross-check two inliers can share a feature on the side with fewer.
    share = min(1.0, on_object(pair.inliers) / max(features, 1))
    fixed, moved = (cv2.GaussianBlur(_gray(rgb).astype(np.float32), (0, 0), OBJECT_BLUR)[core]
                    for rgb in (pair.fixed, pair.moved))
    fixed, moved = fixed - fixed.mean(), moved - moved.mean()
    spread = math.sqrt(float((fixed * fixed).sum() * (moved * moved).sum()))
    return share, float((fixed * moved).sum()) / (spread + 1e-6)


@lru_cache(maxsize=32)  # thumbnails come in a few shapes; 1.5 MB of basis per verified pair otherwise
def _quadratic_terms(height: int, width: int) -> np.ndarray:
    """1, x, y, x², xy, y² at every pixel (x and y as fractions of the side): a quadratic surface's
    basis. Shared between calls, so read-only."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x, y = x / width, y / height
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)
    terms.setflags(write=False)
    return terms


def _foreground(rgb: np.ndarray, inside: np.ndarray, terms: np.ndarray) -> tuple[float, np.ndarray]:
    """The share of `inside` that a smooth backdrop explains (see BACKDROP_SHARE), and where `rgb`
    shows something in front of it. The backdrop is a quadratic colour surface (over
    `terms`, _quadratic_terms) fitted to `inside`, refitted to the pixels it explains best (a studio
    backdrop's gradient and light fall-off are smooth; the object is not part of it)."""
    smooth = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), 2.0)
    sample = np.zeros_like(inside)
    sample[::3, ::3] = True  # every third pixel each way: the surface is smooth
    sample &= inside
    if not sample.any():
        return 0.0, sample
    terms_sample, colours = terms[sample], smooth[sample]
    fit = np.ones(len(colours), dtype=bool)
    for _ in range(4):  # least squares by the normal equations (6 terms); lstsq copes with a thin overlap
        chosen = terms_sample[fit]
        coefficients = np.linalg.lstsq(chosen.T @ chosen, chosen.T @ colours[fit], rcond=None)[0]
        residual = np.linalg.norm(colours - terms_sample @ coefficients, axis=1)
        fit = residual <= max(float(np.median(residual)), BACKDROP_DISTANCE / 2)
    distance = np.linalg.norm(smooth - terms @ coefficients, axis=-1)
    front = (distance > FOREGROUND_DISTANCE).astype(np.uint8)
    return (float((distance[inside] < BACKDROP_DISTANCE).mean()),
            (cv2.morphologyEx(front, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)) > 0) & inside)


def _hue_and_colour(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hue (0..255, OpenCV's full range) of the smoothed image, and where it is coloured."""
    hsv = cv2.cvtColor(cv2.GaussianBlur(rgb, (0, 0), HUE_BLUR), cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    return hsv[..., 0], hsv[..., 1] * hsv[..., 2] / 255 >= MIN_CHROMA


INSIDE_SLACK = 0.03  # a frame counts as inside the other when it overshoots by at most this much
MIN_MARGIN = 0.05  # ... and leaves at least this share of the other's width or height around it
UNIFORM_STD = 12.0  # grey-level spread below which a margin is a border, not picture


def _overhang(box: list[float]) -> float:
    x0, y0, x1, y1 = box
    return max(0.0, -x0, -y0, x1 - 1, y1 - 1)


def _inside(box: list[float]) -> bool:
    x0, y0, x1, y1 = box
    if min(x0, y0) < -INSIDE_SLACK or max(x1, y1) > 1 + INSIDE_SLACK:
        return False
    return (x1 - x0) < 1 - MIN_MARGIN or (y1 - y0) < 1 - MIN_MARGIN


def _uniform_margin(gray: np.ndarray, box: list[float], mirror: bool) -> bool:
    """Whether the part of `gray` outside `box` (fractions; mirrored box if the fit was) is flat."""
    height, width = gray.shape
    x0, y0, x1, y1 = box
    if mirror:
        x0, x1 = 1 - x1, 1 - x0
    inset = 2  # pixels: JPEG ringing at the seam is neither border nor picture
    mask = np.ones_like(gray, dtype=bool)
    mask[max(0, int(y0 * height) - inset):min(height, int(y1 * height) + inset),
         max(0, int(x0 * width) - inset):min(width, int(x1 * width) + inset)] = False
    margin = gray[mask]
    return margin.size >= 0.02 * gray.size and float(margin.std()) < UNIFORM_STD


def _coverage(points_a: np.ndarray, shape_a, points_b: np.ndarray, shape_b) -> float:
    """The share of the smaller image spanned by the inliers' bounding box."""
    def spanned(points: np.ndarray, shape) -> tuple[float, float]:
        span = points.max(axis=0) - points.min(axis=0)
        return float(span[0] * span[1]), float(shape[0] * shape[1])

    area_a, total_a = spanned(points_a, shape_a)
    area_b, total_b = spanned(points_b, shape_b)
    return area_a / total_a if total_a <= total_b else area_b / total_b


def _box(transform: np.ndarray, shape_a, shape_b, mirror: bool) -> list[float]:
    """A's frame mapped into B's, as fractions of B's width and height."""
    (height_a, width_a), (height_b, width_b) = shape_a, shape_b
    x0, y0, x1, y1 = _mapped(transform, (0, 0, width_a, height_a), (0, 0, width_b, height_b))
    if mirror:  # the fit was made against B mirrored: map back into B as it is
        x0, x1 = 1 - x1, 1 - x0
    return [round(v, 3) for v in (x0, y0, x1, y1)]


def _mapped(transform: np.ndarray, box_a, box_b) -> list[float]:
    """The box around box_a (pixels of A: left, top, right, bottom) mapped by `transform`, as
    fractions of box_b (pixels of B)."""
    left, top, right, bottom = box_a
    corners = np.float32([[left, top], [right, top], [right, bottom], [left, bottom]])
    mapped = corners @ transform[:, :2].T + transform[:, 2]
    (x0, y0), (x1, y1) = mapped.min(axis=0), mapped.max(axis=0)
    left, top, right, bottom = box_b
    width, height = right - left, bottom - top
    return [float(x0 - left) / width, float(y0 - top) / height,
            float(x1 - left) / width, float(y1 - top) / height]
