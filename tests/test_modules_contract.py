"""The module server's HTTP contracts, over real HTTP against the real server process (offline
profile, real MobileNetV2 weights), sending exactly what Weaviate and Elasticsearch send."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import httpx
import imagehash
import numpy as np
import pytest
import skimage.data
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from deeplens.modules import phash
from deeplens.modules.images import trim_borders

MOBILENET_DIM = 1280
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


# ---- helpers shared with the other module test files ----


def photo(name: str, width: int | None = None) -> Image.Image:
    """A real RGB photo from scikit-image's bundled samples, optionally resized to `width`."""
    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    if width:
        image = image.resize((width, round(width * image.height / image.width)), Image.Resampling.LANCZOS)
    return image


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post_raw(client: httpx.Client, path: str, payload) -> httpx.Response:
    """POST a JSON body the way Weaviate's Go client does: raw bytes, no Content-Type header."""
    response = client.post(path, content=json.dumps(payload).encode())
    assert "content-type" not in {k.lower() for k in response.request.headers}
    return response


def json_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    return body["error"]


def metric_samples(client: httpx.Client) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def reference_phash(image: Image.Image) -> str:
    """imagehash's pHash of the picture after its uniform borders are trimmed (the documented contract)."""
    return str(imagehash.phash(trim_borders(image)))


def imagehash_bits(image: Image.Image) -> list[float]:
    return phash.hex_to_bits(reference_phash(image)).astype(float).tolist()


@pytest.fixture(scope="module")
def client(modules_url: str):
    with httpx.Client(base_url=modules_url, timeout=120, follow_redirects=False) as http:
        yield http


# ---- meta and health ----


def test_meta_routes(client):
    meta = client.get("/meta").json()
    assert meta["profile"] == "offline"
    assert meta["models"]["semantic"]["dimensions"] == MOBILENET_DIM
    assert "ImageNet" in meta["models"]["semantic"]["weights"]  # the real shipped weights
    semantic = client.get("/semantic/meta").json()
    assert semantic == meta["models"]["semantic"]
    assert semantic["texts"] is False and semantic["normalised"] == "l2"
    phash_meta = client.get("/phash/meta").json()
    assert phash_meta["dimensions"] == 64 and phash_meta["distance"] == "hamming"


def test_live_and_ready_answer_while_the_model_is_busy(client, modules_url):
    """Health checks never queue behind inference: they come back before a long batch does."""
    images = [b64(encode(photo(name, 1024))) for name in PHOTOS * 4]

    async def scenario():
        async with httpx.AsyncClient(base_url=modules_url, timeout=120) as http:
            order = []

            async def heavy():
                response = await http.post("/semantic/vectorize", content=json.dumps({"images": images}).encode())
                order.append(("vectorize", response.status_code))

            async def probe(path):
                await asyncio.sleep(0.05)  # let the heavy request reach the model first
                response = await http.get(path)
                order.append((path, response.status_code, response.json()))

            await asyncio.gather(heavy(), probe("/.well-known/live"), probe("/.well-known/ready"))
            return order

    order = asyncio.run(scenario())
    assert order[-1] == ("vectorize", 200)
    assert sorted(order[:2]) == [
        ("/.well-known/live", 200, {"live": True}),
        ("/.well-known/ready", 200, {"ready": True}),
    ]


# ---- multi2vec-clip contract ----


def test_phash_vectorize_one_vector_per_image_in_order_matching_imagehash(client):
    # PNG is lossless and not draft-decoded, so the server sees exactly the pixels imagehash sees.
    images = [photo(name, 256) for name in PHOTOS]
    response = post_raw(client, "/phash/vectorize", {"texts": [], "images": [b64(encode(i, "PNG")) for i in images]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["textVectors"] == []
    assert body["imageVectors"] == [imagehash_bits(image) for image in images]
    assert len({tuple(v) for v in body["imageVectors"]}) == len(images)  # all different photos


def test_phash_bit_order_is_hex_msb_first(client):
    image = photo("astronaut", 128)
    [vector] = post_raw(client, "/phash/vectorize", {"images": [b64(encode(image, "PNG"))]}).json()["imageVectors"]
    hex_hash = reference_phash(image)
    for i, bit in enumerate(vector):
        nibble = int(hex_hash[i // 4], 16)
        assert bit == (nibble >> (3 - i % 4)) & 1, f"bit {i}"


def test_semantic_vectorize_one_normalised_vector_per_image_in_order(client):
    images = [b64(encode(photo(name, 320))) for name in PHOTOS[:4]]
    response = post_raw(client, "/semantic/vectorize", {"texts": [], "images": images})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["textVectors"] == []
    vectors = np.array(body["imageVectors"])
    assert vectors.shape == (4, MOBILENET_DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Order: each position holds the vector of that image when sent on its own.
    for image, vector in zip(images, vectors):
        [alone] = post_raw(client, "/semantic/vectorize", {"images": [image]}).json()["imageVectors"]
        np.testing.assert_allclose(alone, vector, atol=1e-4)
    # Real weights: distinct photos are far from each other.
    similarity = vectors @ vectors.T
    assert similarity[~np.eye(4, dtype=bool)].max() < 0.9


def test_semantic_rejects_texts_on_the_offline_profile(client):
    error = json_error(post_raw(client, "/semantic/vectorize", {"texts": ["a cat"], "images": []}), 422)
    assert "images only" in error and "clip" in error


def test_phash_rejects_texts(client):
    assert "images only" in json_error(post_raw(client, "/phash/vectorize", {"texts": ["a cat"]}), 422)


def test_empty_lists_give_empty_vectors(client):
    for path in ("/phash/vectorize", "/semantic/vectorize"):
        assert post_raw(client, path, {"texts": [], "images": []}).json() == {"textVectors": [], "imageVectors": []}


# ---- img2vec-neural, features API, Elasticsearch custom inference ----


def test_img2vec_neural_contract(client):
    response = post_raw(client, "/vectors", {"id": "obj-1", "image": b64(encode(photo("coffee", 300)))})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "obj-1" and body["dim"] == MOBILENET_DIM == len(body["vector"])
    assert abs(np.linalg.norm(body["vector"]) - 1) < 1e-5


def test_features_batch_with_per_item_errors(client):
    good = photo("chelsea", 400)  # 400x266
    payload = {
        "images": [
            {"id": "cat", "data": b64(encode(good))},
            {"id": "not-base64", "data": "@@@ not base64 @@@"},
            {"id": "text", "data": b64(b"just some text, no image")},
            {"id": "empty", "data": ""},
        ]
    }
    response = post_raw(client, "/v1/features", payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["features"] == ["info", "phash", "semantic"]  # the default set
    cat, not_b64, text, empty = body["results"]
    assert [r["id"] for r in body["results"]] == ["cat", "not-base64", "text", "empty"]
    assert (cat["width"], cat["height"], cat["format"]) == (*good.size, "JPEG")
    assert len(cat["phash"]["bits"]) == 64 and phash.hex_to_bits(cat["phash"]["hex"]).tolist() == cat["phash"]["bits"]
    assert len(cat["semantic"]) == MOBILENET_DIM and "error" not in cat
    assert "base64" in not_b64["error"] and "phash" not in not_b64
    assert "supported format" in text["error"] and "semantic" not in text
    assert "empty" in empty["error"]


def test_features_subset(client):
    item = {"id": "a", "data": b64(encode(photo("astronaut", 256), "PNG"))}
    [only_phash] = post_raw(client, "/v1/features", {"images": [item], "features": ["phash"]}).json()["results"]
    assert set(only_phash) == {"id", "phash"}
    body = post_raw(client, "/v1/features", {"images": [item], "features": ["dihedral", "info"]}).json()
    assert body["features"] == ["dihedral", "info"]
    [result] = body["results"]
    assert set(result) == {"id", "phash_dihedral", "width", "height", "format"}
    image = photo("astronaut", 256)
    assert result["phash_dihedral"]["identity"] == reference_phash(image)
    # Variants turn the 32x32 grid, not the photo, so they match the turned photo's hash up to a
    # few bits of resampling noise, and are far from the unturned hash.
    for name, turn in (("rot90", Image.Transpose.ROTATE_90), ("flip_h", Image.Transpose.FLIP_LEFT_RIGHT)):
        variant = result["phash_dihedral"][name]
        assert phash.hamming(variant, reference_phash(image.transpose(turn))) <= 4
        assert phash.hamming(variant, result["phash_dihedral"]["identity"]) >= 16
    json_error(post_raw(client, "/v1/features", {"images": [item], "features": ["colour"]}), 422)


def test_verify_confirms_crops_and_borders_and_rejects_look_alikes(client):
    original = photo("astronaut", 512)
    width, height = original.size
    cropped = original.crop((width // 10, height // 10, width - width // 10, height - height // 10))
    bordered = Image.new("RGB", (width + 80, height + 80), "white")
    bordered.paste(original, (40, 40))
    tilted = original.rotate(4, resample=Image.Resampling.BICUBIC)
    pairs = [(original, cropped), (original, bordered), (original, tilted), (original, photo("coffee", 512)),
             (photo("chelsea", 512), photo("coffee", 512))]
    images = [b64(encode(image)) for pair in pairs for image in pair] + [b64(b"not an image")]
    payload = {"images": images, "pairs": [[2 * i, 2 * i + 1] for i in range(len(pairs))] + [[0, len(images) - 1]]}
    response = post_raw(client, "/v1/verify", payload)
    assert response.status_code == 200, response.text
    crop, border, tilt, other, another, bad = response.json()["results"]
    for check in (crop, border, tilt):
        assert check["verified"] and check["inliers"] >= 15, check
    assert crop["scale"] > 1.0  # the crop, shown at the same size, is the original enlarged
    assert abs(tilt["rotation_deg"] + 4) < 1.5 or abs(tilt["rotation_deg"] - 4) < 1.5
    x0, y0, x1, y1 = border["a_in_b"]  # the original sits inside the bordered copy, off its edges
    assert 0 < x0 < 0.2 and 0 < y0 < 0.2 and 0.8 < x1 < 1 and 0.8 < y1 < 1
    assert border["derived"] == "b" and crop["derived"] == "b"  # the bordered copy; the crop
    x0, y0, x1, y1 = crop["b_in_a"]
    assert 0.05 < x0 < 0.15 and 0.05 < y0 < 0.15 and 0.85 < x1 < 0.95 and 0.85 < y1 < 0.95
    assert not other["verified"] and not another["verified"] and other["inliers"] < 15
    assert "supported format" in bad["error"]
    json_error(post_raw(client, "/v1/verify", {"images": images[:2], "pairs": [[0, 2]]}), 422)


def test_verify_finds_an_image_features_once_across_calls(client):
    """A grouping run sends an image in several calls: the second call finds its features cached
    and answers the same."""
    original = photo("chelsea", 512)
    cropped = original.crop((40, 30, 480, 330))
    payload = {"images": [b64(encode(original)), b64(encode(cropped))], "pairs": [[0, 1]]}
    features = ("deeplens_verify_features_total", (("source", "cache"),))
    cached_before = metric_samples(client).get(features, 0.0)
    first = post_raw(client, "/v1/verify", payload).json()["results"]
    second = post_raw(client, "/v1/verify", payload).json()["results"]
    assert first == second and first[0]["verified"] and first[0]["derived"] == "b"
    assert metric_samples(client)[features] - cached_before >= 2


def test_line_wrapped_base64_and_data_urls(client):
    data = encode(photo("coffee", 200), "PNG")
    wrapped = base64.encodebytes(data).decode()  # 76-column lines, like the `base64` command
    assert "\n" in wrapped
    expected = imagehash_bits(photo("coffee", 200))
    for text in (wrapped, f"data:image/png;base64,{b64(data)}"):
        [result] = post_raw(client, "/v1/features", {"images": [{"data": text}], "features": ["phash"]}).json()["results"]
        assert result["phash"]["bits"] == expected


def test_es_custom_inference_contract(client):
    images = [b64(encode(photo(name, 256))) for name in PHOTOS[:3]]
    semantic = post_raw(client, "/v1/es/semantic/embeddings", {"input": images}).json()
    assert [len(d["embedding"]) for d in semantic["data"]] == [MOBILENET_DIM] * 3
    hashes = post_raw(client, "/v1/es/phash/embeddings", {"input": images[0]}).json()  # a single string too
    assert len(hashes["data"]) == 1 and set(hashes["data"][0]["embedding"]) <= {0.0, 1.0}
    assert "unknown model" in json_error(post_raw(client, "/v1/es/pdq/embeddings", {"input": images}), 404)


def test_same_image_same_vector_through_every_endpoint(client):
    # A 1024 px JPEG is draft-decoded; the pHash must not depend on which features were asked for.
    data = b64(encode(photo("rocket", 1024), quality=90))
    phash_vectors = [
        post_raw(client, "/phash/vectorize", {"images": [data]}).json()["imageVectors"][0],
        post_raw(client, "/v1/es/phash/embeddings", {"input": [data]}).json()["data"][0]["embedding"],
        post_raw(client, "/v1/features", {"images": [{"data": data}]}).json()["results"][0]["phash"]["bits"],
        post_raw(client, "/v1/features", {"images": [{"data": data}], "features": ["phash"]}).json()["results"][0]["phash"]["bits"],
    ]
    assert all(v == phash_vectors[0] for v in phash_vectors)
    semantic_vectors = [
        post_raw(client, "/semantic/vectorize", {"images": [data]}).json()["imageVectors"][0],
        post_raw(client, "/vectors", {"id": "x", "image": data}).json()["vector"],
        post_raw(client, "/v1/es/semantic/embeddings", {"input": [data]}).json()["data"][0]["embedding"],
        post_raw(client, "/v1/features", {"images": [{"data": data}]}).json()["results"][0]["semantic"],
    ]
    for vector in semantic_vectors[1:]:
        np.testing.assert_allclose(vector, semantic_vectors[0], atol=1e-4)


# ---- HTTP pitfalls: redirects, error bodies ----


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/semantic/vectorize/"), ("POST", "/phash/vectorize/"), ("GET", "/meta/"), ("POST", "/vectors/"),
     ("GET", "/.well-known/ready/"), ("GET", "/nowhere")],
)
def test_no_trailing_slash_redirects(client, method, path):
    response = client.request(method, path, content=b'{"images": []}' if method == "POST" else None)
    assert "not found" in json_error(response, 404).lower()
    assert "location" not in response.headers


def test_every_error_is_json(client):
    assert "Method Not Allowed" in json_error(client.get("/semantic/vectorize"), 405)
    assert "not valid JSON" in json_error(client.post("/semantic/vectorize", content=b"{images"), 400)
    assert "not valid JSON" in json_error(client.post("/phash/vectorize", content=b"[" * 100_000), 400)
    assert "not valid JSON" in json_error(client.post("/phash/vectorize", content=b"\xff\xfe\x00"), 400)
    assert "contract" in json_error(client.post("/phash/vectorize", content=b""), 422)  # empty body: null
    assert "images.0" in json_error(post_raw(client, "/phash/vectorize", {"images": [42]}), 422)
    assert "image" in json_error(post_raw(client, "/vectors", {"id": "x"}), 422)
    assert "images[1]" in json_error(
        post_raw(client, "/phash/vectorize", {"images": [b64(encode(photo("coffee", 64))), "%%%"]}), 400
    )


# ---- concurrency, batching, metrics ----


def test_parallel_requests_all_correct_and_batched(client, modules_url):
    names = PHOTOS * 4  # 24 requests, one image each, like Weaviate's parallel vectorize calls
    images = {name: b64(encode(photo(name, 512))) for name in PHOTOS}
    expected_phash = {n: post_raw(client, "/phash/vectorize", {"images": [d]}).json()["imageVectors"][0] for n, d in images.items()}
    expected_semantic = {n: post_raw(client, "/semantic/vectorize", {"images": [d]}).json()["imageVectors"][0] for n, d in images.items()}
    before = metric_samples(client)

    async def burst(path):
        async with httpx.AsyncClient(base_url=modules_url, timeout=120, limits=httpx.Limits(max_connections=64)) as http:
            responses = await asyncio.gather(
                *(http.post(path, content=json.dumps({"images": [images[n]]}).encode()) for n in names)
            )
        assert all(r.status_code == 200 for r in responses)
        return [r.json()["imageVectors"] for r in responses]

    for name, vectors in zip(names, asyncio.run(burst("/phash/vectorize"))):
        assert vectors == [expected_phash[name]]
    for name, vectors in zip(names, asyncio.run(burst("/semantic/vectorize"))):
        assert len(vectors) == 1
        np.testing.assert_allclose(vectors[0], expected_semantic[name], atol=1e-4)

    after = metric_samples(client)
    batches = after[("deeplens_batch_size_count", ())] - before[("deeplens_batch_size_count", ())]
    batched_images = after[("deeplens_batch_size_sum", ())] - before[("deeplens_batch_size_sum", ())]
    assert batched_images == len(names)
    assert batches < len(names), "24 concurrent single-image requests never shared a model call"
    # Some call carried more than one image: the <= 1 bucket did not take every batch.
    ones = after[("deeplens_batch_size_bucket", (("le", "1.0"),))] - before[("deeplens_batch_size_bucket", (("le", "1.0"),))]
    assert ones < batches


def test_metrics_exposition(client):
    post_raw(client, "/phash/vectorize", {"images": ["%%%"]})  # one bad request, on purpose
    post_raw(client, "/phash/vectorize", {"images": [b64(encode(photo("coffee", 64)))]})
    client.get("/no/such/route")
    samples = metric_samples(client)
    assert samples[("deeplens_requests_total", (("route", "/phash/vectorize"), ("status", "200")))] >= 1
    assert samples[("deeplens_requests_total", (("route", "/phash/vectorize"), ("status", "400")))] >= 1
    assert samples[("deeplens_requests_total", (("route", "unmatched"), ("status", "404")))] >= 1
    latency = "deeplens_request_seconds"  # the histogram is exposed; its values are not checked
    assert samples[(f"{latency}_count", (("route", "/phash/vectorize"),))] >= 2
    assert (f"{latency}_bucket", (("le", "0.5"), ("route", "/phash/vectorize"))) in samples
    assert ("deeplens_batch_size_bucket", (("le", "32.0"),)) in samples
    assert samples[("deeplens_errors_total", (("kind", "http_400"),))] >= 1
    assert samples[("deeplens_errors_total", (("kind", "http_404"),))] >= 1
    assert samples[("deeplens_images_total", (("route", "phash"),))] >= 1
    assert samples.get(("deeplens_errors_total", (("kind", "internal"),)), 0) == 0
