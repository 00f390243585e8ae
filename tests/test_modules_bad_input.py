"""Hostile and odd image input against the real module server: odd-but-valid images get vectors,
bad ones a 4xx JSON error naming the problem, never a 500, and the server stays up."""

from __future__ import annotations

import io
import socket
import struct
import time
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import running_modules_server
from tests.test_modules_contract import MOBILENET_DIM, b64, encode, imagehash_bits, json_error, metric_samples, photo, post_raw

ROUTES = ("/phash/vectorize", "/semantic/vectorize")


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG file whose header claims width x height RGB pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * 4096, 9)  # a trickle of zero rows; the size is the attack
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def animated_gif(frames: list[Image.Image]) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buffer.getvalue()


def _odd_but_valid() -> dict[str, bytes]:
    base = photo("astronaut", 200)
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    gray16 = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
    assert gray16.mode == "I;16"
    return {
        "cmyk-jpeg": encode(base.convert("CMYK"), "JPEG"),
        "grayscale-jpeg": encode(base.convert("L"), "JPEG"),
        "png-16-bit": encode(gray16, "PNG"),
        "palette-png-with-transparency": encode(palette, "PNG", transparency=0),
        "rgba-png": encode(rgba, "PNG"),
        "la-png": encode(base.convert("LA"), "PNG"),
        "1-bit-png": encode(base.convert("1"), "PNG"),
        "animated-gif": animated_gif([base, base.rotate(90), base.rotate(180)]),
        "animated-webp": encode(base, "WEBP", save_all=True, append_images=[base.rotate(90)]),
        "tiff": encode(base, "TIFF"),
        "bmp": encode(base, "BMP"),
        "one-pixel-png": encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "one-pixel-high-strip": encode(base.resize((2000, 1)), "PNG"),
        "data-url": b"",  # sent as a data: URL, see below
    }


ODD = _odd_but_valid()
JPEG = encode(photo("coffee", 300))
PNG = encode(photo("coffee", 300), "PNG")
BAD: dict[str, tuple[str, str]] = {
    # name: (base64 text as sent, words the error must contain)
    "invalid-base64": ("not*base64!", "base64"),
    "base64-with-garbage": (b64(JPEG)[:100] + "$$" + b64(JPEG)[100:], "base64"),
    "text-bytes": (b64(b"Dear Weaviate, this is a letter, not an image.\n" * 20), "not an image"),
    "zero-size": ("", "empty"),
    "truncated-jpeg": (b64(JPEG[: len(JPEG) // 2]), "truncated"),
    "jpeg-header-only": (b64(JPEG[:300]), "truncated"),
    "truncated-png": (b64(PNG[: len(PNG) // 2]), "truncated"),
    "png-signature-only": (b64(PNG[:8]), "not an image"),
    "bomb-over-max-pixels": (b64(png_declaring(10_000, 10_000)), "decompression-bomb guard"),
    "bomb-huge": (b64(png_declaring(100_000, 100_000)), "decompression-bomb guard"),
    "eps-not-allowed": (b64(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"), "not an image"),
}


@pytest.fixture(scope="module")
def client(modules_url: str):
    with httpx.Client(base_url=modules_url, timeout=120, follow_redirects=False) as http:
        yield http


@pytest.mark.parametrize("name", sorted(ODD))
@pytest.mark.parametrize("route", ROUTES)
def test_odd_but_valid_images_get_a_vector(client, route, name):
    data = f"data:image/png;base64,{b64(PNG)}" if name == "data-url" else b64(ODD[name])
    response = post_raw(client, route, {"images": [data]})
    assert response.status_code == 200, response.text
    [vector] = response.json()["imageVectors"]
    assert len(vector) == (64 if route == "/phash/vectorize" else MOBILENET_DIM)
    assert np.all(np.isfinite(vector))


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize("route", ROUTES)
def test_bad_images_get_a_json_error_naming_the_problem(client, route, name):
    data, words = BAD[name]
    error = json_error(post_raw(client, route, {"images": [b64(JPEG), data]}), 400)
    assert error.startswith("images[1]: ") and words in error, error


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_images_in_other_contracts(client, name):
    data, words = BAD[name]
    assert words in json_error(post_raw(client, "/vectors", {"id": "x", "image": data}), 400)
    assert words in json_error(post_raw(client, "/v1/es/phash/embeddings", {"input": [data]}), 400)
    [result] = post_raw(client, "/v1/features", {"images": [{"id": name, "data": data}]}).json()["results"]
    assert words in result["error"]


def test_animated_gif_uses_the_first_frame(client):
    frames = [photo("chelsea", 200), photo("coffee", 200), photo("rocket", 200)]
    gif = Image.open(io.BytesIO(animated_gif(frames)))
    first = gif.convert("RGB")  # the first frame as the GIF stores it (palette-quantised)
    gif.seek(1)
    second = gif.convert("RGB")
    [vector] = post_raw(client, "/phash/vectorize", {"images": [b64(animated_gif(frames))]}).json()["imageVectors"]
    assert vector == imagehash_bits(first)
    assert vector != imagehash_bits(second)


def test_sixteen_bit_png_is_the_same_picture_as_eight_bit(client):
    # A dark photo: scaling 16-bit samples to 8 bits must not stretch its contrast.
    dark = (np.asarray(photo("astronaut", 256).convert("L")) * 0.3).astype(np.uint8)
    eight = b64(encode(Image.fromarray(dark), "PNG"))
    sixteen = b64(encode(Image.fromarray(dark.astype(np.uint16) * 257), "PNG"))
    hashes = post_raw(client, "/phash/vectorize", {"images": [eight, sixteen]}).json()["imageVectors"]
    assert hashes[0] == hashes[1]
    vectors = np.array(post_raw(client, "/semantic/vectorize", {"images": [eight, sixteen]}).json()["imageVectors"])
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-4)


def test_exif_orientation_is_applied(client):
    upright = photo("astronaut", 256).crop((0, 0, 256, 192))  # landscape, so a turn is visible in width/height
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    tagged = b64(encode(stored, "PNG", exif=exif))
    plain_upright = b64(encode(upright, "PNG"))
    plain_stored = b64(encode(stored, "PNG"))
    tagged_hash, upright_hash, stored_hash = post_raw(
        client, "/phash/vectorize", {"images": [tagged, plain_upright, plain_stored]}
    ).json()["imageVectors"]
    assert tagged_hash == upright_hash
    assert tagged_hash != stored_hash
    # The same through JPEG (what cameras write): sizes are multiples of 16, so turning is lossless enough.
    jpeg_tagged = b64(encode(stored, "JPEG", quality=95, exif=exif))
    jpeg_upright = b64(encode(upright, "JPEG", quality=95))
    a, b = post_raw(client, "/phash/vectorize", {"images": [jpeg_tagged, jpeg_upright]}).json()["imageVectors"]
    assert sum(x != y for x, y in zip(a, b)) <= 2
    [info] = post_raw(client, "/v1/features", {"images": [{"data": tagged}], "features": ["info"]}).json()["results"]
    assert (info["width"], info["height"]) == (256, 192)  # as displayed


def test_broken_exif_does_not_lose_the_image(client):
    exif = Image.Exif()
    exif[0x0112] = 99  # no such orientation
    response = post_raw(client, "/phash/vectorize", {"images": [b64(encode(photo("coffee", 128), "JPEG", exif=exif))]})
    assert response.status_code == 200, response.text


def test_client_that_gives_up_mid_body_is_not_an_internal_error(client, modules_url):
    before = metric_samples(client).get(("deeplens_errors_total", (("kind", "client_disconnect"),)), 0)
    url = httpx.URL(modules_url)
    with socket.create_connection((url.host, url.port)) as raw:
        raw.sendall(b"POST /phash/vectorize HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"images\": [\"")
    for _ in range(50):  # the server notices the closed connection asynchronously
        after = metric_samples(client).get(("deeplens_errors_total", (("kind", "client_disconnect"),)), 0)
        if after > before:
            break
        time.sleep(0.1)
    assert after == before + 1


def test_no_internal_errors_and_still_live_and_ready(client):
    """Runs last in this file: after all the above, nothing was a 500 and the server is fine."""
    samples = metric_samples(client)
    assert samples.get(("deeplens_errors_total", (("kind", "internal"),)), 0) == 0
    assert not any(name == "deeplens_requests_total" and dict(labels)["status"].startswith("5") for name, labels in samples)
    assert samples[("deeplens_errors_total", (("kind", "bad_image"),))] >= len(BAD)
    assert client.get("/.well-known/live").json() == {"live": True}
    assert client.get("/.well-known/ready").json() == {"ready": True}


# ---- limits of a second server: small --max-body-mb and --max-pixels ----


@pytest.fixture(scope="module")
def small_limits_url(tmp_path_factory: pytest.TempPathFactory):
    with running_modules_server(tmp_path_factory.mktemp("modules-small-limits"), "--max-body-mb", "1",
                                "--max-pixels", "250000", "--decode-threads", "1") as url:
        yield url


def test_oversized_body_gets_413(small_limits_url):
    big = b64(np.random.default_rng(0).bytes(900_000))  # ~1.2 MB of base64
    with httpx.Client(base_url=small_limits_url, timeout=60) as http:
        error = json_error(post_raw(http, "/phash/vectorize", {"images": [big]}), 413)
        assert "1,048,576-byte limit" in error
        # Without a Content-Length (chunked), the limit still holds while reading.
        chunks = (b" " * 100_000 for _ in range(12))
        assert "limit" in json_error(http.post("/phash/vectorize", content=chunks), 413)
        # Just under the limit is fine.
        ok = post_raw(http, "/phash/vectorize", {"images": [b64(encode(photo("coffee", 300)))]})
        assert ok.status_code == 200
        assert http.get("/.well-known/ready").json() == {"ready": True}


def test_max_pixels_guard_refuses_a_real_large_image(small_limits_url):
    large = b64(encode(photo("coffee", 600)))  # 600x400 = 240,000 pixels: allowed
    larger = b64(encode(photo("coffee", 640)))  # 640x427 = 273,280 pixels: over 250,000
    with httpx.Client(base_url=small_limits_url, timeout=60) as http:
        assert post_raw(http, "/phash/vectorize", {"images": [large]}).status_code == 200
        error = json_error(post_raw(http, "/phash/vectorize", {"images": [larger]}), 400)
        assert "273,280 pixels" in error and "--max-pixels" in error
        # Far over the limit, Pillow's own check (set from --max-pixels) answers, still a clean 400.
        error = json_error(post_raw(http, "/phash/vectorize", {"images": [b64(png_declaring(5_000, 5_000))]}), 400)
        assert "decompression-bomb guard" in error
        assert http.get("/.well-known/live").json() == {"live": True}
