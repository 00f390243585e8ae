"""Geometric verification: is image B the same picture as image A after a crop, a border, a
watermark or a small rotation? Embedding distance only says "the same kind of picture"; this
checks that local features of the two line up under one similarity transform.

Method: ORB keypoints (OpenCV) on the grayscale images, Hamming matching with Lowe's ratio test,
then a RANSAC fit of a partial affine transform (rotation, uniform scale, translation) with
`cv2.estimateAffinePartial2D`. ORB was chosen over AKAZE after trying both on 256 px thumbnails:
the same separation of copies from look-alikes at a third of the time. ORB descriptors are not
mirror invariant, so a pair that fails is tried once more with B mirrored.

Verified when enough matches agree (MIN_INLIERS and MIN_INLIER_RATIO), the scale is sane, and the
matched region covers a real part of the smaller image (a shared logo or a patch of texture
covers little). The evidence says how: inliers, ratio, rotation, scale, mirror, and where A lies
inside B (a crop box in B's coordinates, 0..1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from PIL import Image

from deeplens.modules.images import open_image

ORB_FEATURES = 500
RATIO_TEST = 0.75  # Lowe's ratio: a match must be clearly better than the second best
RANSAC_PIXELS = 4.0  # reprojection error allowed for an inlier, in pixels of B
MIN_INLIERS = 15
MIN_INLIER_RATIO = 0.3
MIN_COVERAGE = 0.1  # share of the smaller image spanned by the inliers (ORB finds no keypoints within 31 px of an edge)
SCALE_RANGE = (0.2, 5.0)
VERIFY_SIZE = 256  # longest side the images are compared at: the size of the stored thumbnails



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
    box: list[float] | None = None  # A's corners mapped into B: [x0, y0, x1, y1] as fractions of B

    def as_json(self) -> dict:
        return asdict(self)


def _gray(data: bytes, max_pixels: int) -> np.ndarray:
    image = open_image(data, max_pixels, draft_to=VERIFY_SIZE, fit=True).image
    image.thumbnail((VERIFY_SIZE, VERIFY_SIZE), Image.Resampling.LANCZOS)
    return np.asarray(image.convert("L"))


def _features(gray: np.ndarray):
    return cv2.ORB_create(nfeatures=ORB_FEATURES).detectAndCompute(gray, None)


def verify(a: bytes, b: bytes, max_pixels: int) -> Verification:
    """Whether b is a geometric copy of a (crop, border, small rotation, overlay), with the evidence.
    Raises BadImage (from decoding) when either cannot be read."""
    gray_a, gray_b = _gray(a, max_pixels), _gray(b, max_pixels)
    keys_a, desc_a = _features(gray_a)
    result = _fit(gray_a, keys_a, desc_a, gray_b, mirror=False)
    if not result.verified:
        mirrored = _fit(gray_a, keys_a, desc_a, np.ascontiguousarray(gray_b[:, ::-1]), mirror=True)
        if mirrored.verified or mirrored.inliers > result.inliers:
            result = mirrored
    return result


def _fit(gray_a: np.ndarray, keys_a, desc_a, gray_b: np.ndarray, mirror: bool) -> Verification:
    keys_b, desc_b = _features(gray_b)
    if desc_a is None or desc_b is None or len(keys_a) < 2 or len(keys_b) < 2:
        return Verification(False, 0, 0, 0.0, 0.0, mirror=mirror)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(desc_a, desc_b, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO_TEST * p[1].distance]
    if len(good) < 3:
        return Verification(False, 0, len(good), 0.0, 0.0, mirror=mirror)
    points_a = np.float32([keys_a[m.queryIdx].pt for m in good])
    points_b = np.float32([keys_b[m.trainIdx].pt for m in good])
    transform, mask = cv2.estimateAffinePartial2D(
        points_a, points_b, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS
    )
    if transform is None:
        return Verification(False, 0, len(good), 0.0, 0.0, mirror=mirror)
    inlier = mask.ravel().astype(bool)
    inliers = int(inlier.sum())
    scale = float(math.hypot(transform[0, 0], transform[1, 0]))
    rotation = math.degrees(math.atan2(transform[1, 0], transform[0, 0]))
    coverage = _coverage(points_a[inlier], gray_a.shape, points_b[inlier], gray_b.shape)
    box = _box(transform, gray_a.shape, gray_b.shape, mirror)
    verified = (
        inliers >= MIN_INLIERS
        and inliers / len(good) >= MIN_INLIER_RATIO
        and SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]
        and coverage >= MIN_COVERAGE
    )
    return Verification(verified, inliers, len(good), round(inliers / len(good), 3), round(coverage, 3),
                        round(rotation, 2), round(scale, 3), mirror, box)


def _coverage(points_a: np.ndarray, shape_a, points_b: np.ndarray, shape_b) -> float:
    """The share of the smaller image spanned by the inliers' bounding box."""
    def spanned(points: np.ndarray, shape) -> tuple[float, float]:
        span = points.max(axis=0) - points.min(axis=0)
        return float(span[0] * span[1]), float(shape[0] * shape[1])

    area_a, total_a = spanned(points_a, shape_a)
    area_b, total_b = spanned(points_b, shape_b)
    return area_a / total_a if total_a <= total_b else area_b / total_b


def _box(transform: np.ndarray, shape_a, shape_b, mirror: bool) -> list[float]:
    height_a, width_a = shape_a
    height_b, width_b = shape_b
    corners = np.float32([[0, 0], [width_a, 0], [width_a, height_a], [0, height_a]])
    mapped = corners @ transform[:, :2].T + transform[:, 2]
    if mirror:  # the fit was made against B mirrored: map back into B as it is
        mapped[:, 0] = width_b - mapped[:, 0]
    x0, y0 = mapped.min(axis=0)
    x1, y1 = mapped.max(axis=0)
    return [round(float(v), 3) for v in (x0 / width_b, y0 / height_b, x1 / width_b, y1 / height_b)]
