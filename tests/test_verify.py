"""Geometric verification (modules/verify.py). The colour rule (MAX_HUE_DISAGREEMENT): a copy keeps
its colours; the same shapes in other colours (two products of one studio) are not a copy, even
where the shared backdrop is most of the picture (BACKDROP_SHARE). The object rule
(MIN_OBJECT_INLIER_SHARE, MIN_OBJECT_CORRELATION): two different objects of one colour in one studio
are not a copy either, also where the backdrop explains less than BACKDROP_SHARE of one of them. The
overhang rules (MAX_OVERHANG, MAX_CONTENT_OVERHANG): a copy's picture lies within its source's or
around it, also when a border leaves room around it."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import skimage.data
from PIL import Image, ImageDraw, ImageFont

from deeplens.modules.images import DEFAULT_MAX_PIXELS
from deeplens.modules.verify import (BACKDROP_SHARE, FAST_THRESHOLD, MAX_CONTENT_OVERHANG, MAX_HUE_DISAGREEMENT,
                                      MAX_OVERHANG, MIN_INLIERS, MIN_OBJECT_CORRELATION, MIN_OBJECT_INLIER_SHARE,
                                      ORB_FEATURES, Keypoints, _foreground, _quadratic_terms, verify)


def keypoints(image: Image.Image) -> Keypoints:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return Keypoints.of(out.getvalue(), DEFAULT_MAX_PIXELS)


def turn_hues(image: Image.Image, degrees: int) -> Image.Image:
    """The same picture with every hue turned: shapes, shading and saturation unchanged."""
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + degrees * 256 // 360) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def test_a_crop_keeps_its_colours_and_a_recoloured_one_is_not_a_copy():
    original = Image.fromarray(skimage.data.astronaut()).resize((256, 256))
    crop = original.crop((20, 16, 236, 240))
    source = keypoints(original)

    copy = verify(source, keypoints(crop), mirror=False)
    assert copy.verified and copy.hue_disagreement is not None and copy.hue_disagreement < 0.05, copy

    recoloured = verify(source, keypoints(turn_hues(crop, 120)), mirror=False)
    assert recoloured.inliers >= MIN_INLIERS and recoloured.coverage > 0.3  # the geometry alone would say copy
    assert not recoloured.verified and recoloured.hue_disagreement > MAX_HUE_DISAGREEMENT, recoloured


def test_a_greyscale_copy_has_no_colours_to_compare():
    original = Image.fromarray(skimage.data.coffee()).resize((256, 171))
    grey = original.crop((16, 10, 240, 160)).convert("L")
    result = verify(keypoints(original), keypoints(grey), mirror=False)
    assert result.verified and result.hue_disagreement is None, result


def backdrop() -> Image.Image:
    """A pink studio backdrop that lightens towards the floor."""
    rows = np.linspace(0, 1, 256)[:, None, None]
    colours = (np.array([225, 185, 215]) * (1 - rows) + np.array([245, 215, 240]) * rows) * np.ones((1, 256, 1))
    return Image.fromarray(colours.astype(np.uint8))


def studio_shot(product: Image.Image) -> Image.Image:
    """`product` in the middle of the backdrop."""
    shot = backdrop()
    shot.paste(product, ((256 - product.width) // 2, (256 - product.height) // 2))
    return shot


def green_cylinder(word: str, light: float, label_top: int, handle: bool = False) -> Image.Image:
    """A green can (a mug with `handle`) on the backdrop, lit at `light` (0 left .. 1 right), with a
    label printed `word` at `label_top`."""
    shot = backdrop()
    draw = ImageDraw.Draw(shot)
    left, top, right, bottom = 98, 60, 158, 190
    for x in range(left, right):
        shade = 0.55 + 0.6 * np.exp(-((x - left) / (right - left) - light) ** 2 / 0.05)
        draw.line([(x, top), (x, bottom)], fill=tuple(int(min(255, c * shade)) for c in (40, 140, 70)))
    if handle:
        draw.arc((138, 90, 188, 150), -90, 90, fill=(40, 140, 70), width=8)
    draw.rectangle((104, label_top, 152, label_top + 24), fill=(235, 235, 220))
    draw.text((108, label_top + 4), word, fill=(30, 30, 30), font=ImageFont.load_default(14))
    return shot


def test_two_products_on_one_backdrop_differ_in_colour_where_the_product_is():
    product = Image.fromarray(skimage.data.coffee()).crop((200, 60, 300, 200)).resize((70, 100))
    source = keypoints(studio_shot(product))

    copy = verify(source, keypoints(studio_shot(product).crop((18, 12, 240, 244))), mirror=False)
    assert copy.verified and copy.hue_disagreement < 0.05, copy

    # The same object in other colours: over the whole picture the backdrop agrees (hue disagreement
    # about 0.1, below the limit), where the object is it does not.
    other = verify(source, keypoints(studio_shot(turn_hues(product, 120))), mirror=False)
    assert other.inliers >= MIN_INLIERS and other.coverage > 0.05  # the geometry alone would say copy
    assert not other.verified and other.hue_disagreement > MAX_HUE_DISAGREEMENT, other


def test_a_mug_of_the_colour_of_a_can_on_one_backdrop_is_not_its_copy():
    can = green_cylinder("mira", light=0.3, label_top=110)
    source = keypoints(can)
    with_sticker = can.copy()  # an overlay on the backdrop: more object in the copy, the can itself unchanged
    ImageDraw.Draw(with_sticker).ellipse((30, 150, 80, 200), fill=(250, 200, 40))
    for copy in (can.crop((20, 16, 240, 244)), can.convert("L"), with_sticker):
        result = verify(source, keypoints(copy), mirror=False)
        assert result.verified, result
        assert result.object_inlier_share >= MIN_OBJECT_INLIER_SHARE, result
        assert result.object_correlation >= MIN_OBJECT_CORRELATION, result

    # Another product of one shape and colour, lit and labelled otherwise: the geometry, the frames
    # and the hues all pass; the print and shading of the object do not.
    def assert_not_a_copy(shot: Image.Image) -> None:
        mug = verify(source, keypoints(shot), mirror=False)
        assert mug.inliers >= MIN_INLIERS and mug.content_overhang <= MAX_CONTENT_OVERHANG, mug
        assert mug.hue_disagreement <= MAX_HUE_DISAGREEMENT, mug
        assert not mug.verified, mug
        assert mug.object_inlier_share < MIN_OBJECT_INLIER_SHARE and mug.object_correlation < MIN_OBJECT_CORRELATION, mug

    mug_shot = green_cylinder("Kelpie", light=0.7, label_top=126, handle=True)
    assert_not_a_copy(mug_shot)

    # A prop on the backdrop (a yellow ball): the backdrop explains less than BACKDROP_SHARE of that
    # shot, the can's shot is still one studio shot, and that is enough for the object rule: the can
    # with the prop stays its copy, the mug with the prop does not.
    def with_prop(shot: Image.Image) -> Image.Image:
        shot = shot.copy()
        ImageDraw.Draw(shot).ellipse((170, -20, 300, 110), fill=(250, 200, 40))
        return shot

    assert backdrop_share(can) >= BACKDROP_SHARE > backdrop_share(with_prop(can))
    copy = verify(source, keypoints(with_prop(can)), mirror=False)
    assert copy.verified and copy.object_inlier_share >= MIN_OBJECT_INLIER_SHARE, copy
    assert_not_a_copy(with_prop(mug_shot))


def backdrop_share(shot: Image.Image) -> float:
    """The share of the picture that a smooth backdrop explains, as verification measures it."""
    rgb = keypoints(shot).rgb
    height, width = rgb.shape[:2]
    return _foreground(rgb, np.ones((height, width), dtype=bool), _quadratic_terms(height, width))[0]


def test_another_shot_of_the_scene_is_not_a_copy_of_a_bordered_copy():
    scene = Image.fromarray(skimage.data.astronaut())  # 512 x 512
    shot = scene.crop((0, 64, 384, 448)).resize((256, 256))
    moved = scene.crop((96, 64, 480, 448)).resize((256, 256))  # the camera moved by a quarter of the frame
    bordered = Image.new("RGB", (336, 336), (128, 128, 128))
    bordered.paste(shot, (40, 40))
    source, other = keypoints(shot), keypoints(moved)

    copy = verify(source, keypoints(bordered), mirror=False)
    assert copy.verified and copy.derived == "b" and copy.content_overhang < 0.02, copy

    assert verify(source, other, mirror=False).overhang > MAX_OVERHANG  # the frames overlap in part
    # The border leaves the moved shot's frame room within the bordered copy's frame; the picture
    # inside the bars is what it overhangs.
    beside_border = verify(other, keypoints(bordered), mirror=False)
    assert beside_border.inliers >= MIN_INLIERS and beside_border.overhang <= MAX_OVERHANG, beside_border
    assert not beside_border.verified and beside_border.content_overhang > MAX_CONTENT_OVERHANG, beside_border


def orb() -> cv2.ORB:
    return cv2.ORB_create(nfeatures=ORB_FEATURES, fastThreshold=FAST_THRESHOLD)


def test_features_are_a_new_detectors_on_the_grey_of_the_rgb_pixels_on_any_thread():
    """Keypoints keeps an ORB detector per thread and takes the grey straight from the decoded image
    (for speed): the same features as a new detector on Pillow's grey of the RGB pixels, which the
    thresholds were chosen on, whichever thread found them and whatever it found before."""
    photos = [Image.fromarray(skimage.data.astronaut()).resize((256, 256)),
              Image.fromarray(skimage.data.coffee()).resize((256, 171))]
    with ThreadPoolExecutor(2) as pool:
        found = list(pool.map(keypoints, photos * 3))
    for image in found:
        grey = np.asarray(Image.fromarray(image.rgb).convert("L"))
        keys, descriptors = orb().detectAndCompute(grey, None)
        assert len(keys) > 100 and np.array_equal(descriptors, image.desc)
        assert np.array_equal(np.float32([key.pt for key in keys]), image.points)
        mirrored_keys, _ = orb().detectAndCompute(np.ascontiguousarray(grey[:, ::-1]), None)
        assert np.array_equal(np.float32([key.pt for key in mirrored_keys]), image.mirrored().points)
