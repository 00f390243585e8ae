"""The ONNX Runtime backend: the offline profile's embeddings agree with torch's on real photos, the
export is cached under the weights' hash (and a cached start builds no torch network), the module
server runs it by default on CPU and says so in /meta; the clip profile's image and text towers agree
with torch's through the server (on random weights: no model hub here); asking for ONNX Runtime where
it cannot run is a clear error."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch

from deeplens.modules.engine import MIN_DRAFT_SIZE
from deeplens.modules.images import DEFAULT_MAX_PIXELS, open_image, trim_borders
from deeplens.modules.meta import semantic_meta
from deeplens.modules.models import (
    SemanticModel,
    WeightsMissing,
    load_semantic_model,
    mobilenet_weights_path,
    pick_runtime,
)
from deeplens.modules.onnx_runtime import weights_digest
from deeplens.samples import jpeg_bytes, sample_photos
from tests.conftest import running_modules_server
from tests.test_modules_contract import b64, post_raw

# fp32 ONNX Runtime and torch differ only in summation order; a vector that moved more is a wrong export.
MIN_COSINE = 0.999


@pytest.fixture(scope="module")
def photos_jpeg() -> dict[str, bytes]:
    return {name: jpeg_bytes(image) for name, image in sample_photos().items()}


@pytest.fixture(scope="module")
def torch_model() -> SemanticModel:
    return load_semantic_model("offline", "cpu", runtime="torch")


def embed_as_the_server_does(model: SemanticModel, photos: dict[str, bytes]) -> np.ndarray:
    """Decode (JPEG draft, border trim) and preprocess the way modules/engine.py does, then embed."""
    draft = max(model.input_size, MIN_DRAFT_SIZE)
    pixels = [model.preprocess(trim_borders(open_image(data, DEFAULT_MAX_PIXELS, draft_to=draft).image))
              for data in photos.values()]
    return model.embed_images(pixels)


def test_onnx_embeddings_agree_with_torch_and_the_export_is_cached(tmp_path, photos_jpeg, torch_model):
    onnx_model = load_semantic_model("offline", "cpu", cache_dir=tmp_path)  # auto: ONNX Runtime on CPU
    assert (onnx_model.runtime, torch_model.runtime) == ("onnx", "torch")
    [export] = (tmp_path / "onnx").iterdir()
    assert weights_digest(mobilenet_weights_path()) in export.name
    exported_at = export.stat().st_mtime_ns

    expected = embed_as_the_server_does(torch_model, photos_jpeg)
    got = embed_as_the_server_does(onnx_model, photos_jpeg)
    assert got.shape == expected.shape == (len(photos_jpeg), 1280)
    cosines = (got * expected).sum(axis=1)
    assert cosines.min() >= MIN_COSINE, dict(zip(photos_jpeg, cosines.round(5)))

    # A second start reads the cached export instead of exporting again (it does not even load the
    # torch weights), and embeds the same.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("a cached start loaded the torch weights"))
        again = load_semantic_model("offline", "cpu", cache_dir=tmp_path)
    assert [p.name for p in (tmp_path / "onnx").iterdir()] == [export.name]
    assert export.stat().st_mtime_ns == exported_at
    np.testing.assert_array_equal(embed_as_the_server_does(again, photos_jpeg), got)
    assert (semantic_meta(again)["runtime"], semantic_meta(torch_model)["runtime"]) == ("onnx", "torch")


def test_server_answers_with_onnx_runtime_by_default(modules_url, photos_jpeg, torch_model):
    with httpx.Client(base_url=modules_url, timeout=120) as client:
        meta = client.get("/meta").json()
        assert meta["models"]["semantic"]["runtime"] == "onnx"
        assert meta["models"]["semantic"]["device"] == "cpu"
        assert meta["versions"]["onnxruntime"]
        items = [{"id": name, "data": b64(data)} for name, data in photos_jpeg.items()]
        response = post_raw(client, "/v1/features", {"images": items, "features": ["semantic"]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == list(photos_jpeg)
    got = np.array([r["semantic"] for r in results])
    cosines = (got * embed_as_the_server_does(torch_model, photos_jpeg)).sum(axis=1)
    assert cosines.min() >= MIN_COSINE, dict(zip(photos_jpeg, cosines.round(5)))


def test_random_weights_are_exported_in_memory_and_are_the_same_in_every_process(tmp_path):
    first = load_semantic_model("offline", "cpu", random_weights=True, cache_dir=tmp_path)
    assert first.runtime == "onnx" and not (tmp_path / "onnx").exists()
    second = load_semantic_model("offline", "cpu", random_weights=True, runtime="torch")
    pixels = [torch.from_numpy(np.random.default_rng(0).random((3, 224, 224), dtype=np.float32))]
    assert (first.embed_images(pixels) * second.embed_images(pixels)).sum() >= MIN_COSINE


def test_clip_towers_on_onnx_runtime_agree_with_torch_through_the_server(tmp_path, photos_jpeg):
    """Both towers of the clip profile, exported in memory (random weights: no model hub here; the
    fixed seed gives this process and the server the same weights)."""
    reference = load_semantic_model("clip", "cpu", random_weights=True, runtime="torch")
    texts = ["a cup of coffee on a table", "a rocket", "", "ü " * 100]  # the last is cut at the context length
    with running_modules_server(tmp_path, "--random-weights", profile="clip") as url, \
            httpx.Client(base_url=url, timeout=120) as client:
        semantic = client.get("/meta").json()["models"]["semantic"]
        assert (semantic["runtime"], semantic["device"], semantic["texts"]) == ("onnx", "cpu", True)
        items = [{"id": name, "data": b64(data)} for name, data in photos_jpeg.items()]
        images = post_raw(client, "/v1/features", {"images": items, "features": ["semantic"]})
        text_answer = post_raw(client, "/semantic/vectorize", {"texts": texts})
    assert images.status_code == 200, images.text
    assert text_answer.status_code == 200, text_answer.text
    got = np.array([r["semantic"] for r in images.json()["results"]])
    cosines = (got * embed_as_the_server_does(reference, photos_jpeg)).sum(axis=1)
    assert got.shape == (len(photos_jpeg), 512) and cosines.min() >= MIN_COSINE, dict(zip(photos_jpeg, cosines.round(5)))
    text_vectors = np.array(text_answer.json()["textVectors"])
    text_cosines = (text_vectors * reference.embed_texts(texts)).sum(axis=1)
    assert text_vectors.shape == (len(texts), 512) and text_cosines.min() >= MIN_COSINE, text_cosines.round(5)


def test_onnx_runtime_where_it_cannot_run_is_a_clear_error():
    # Checked before any weights load, so this holds on a machine without CUDA too.
    with pytest.raises(WeightsMissing, match="--runtime onnx runs on CPU only"):
        pick_runtime("onnx", torch.device("cuda"))
    assert pick_runtime("auto", torch.device("cuda")) == "torch"
    assert pick_runtime("auto", torch.device("cpu")) == "onnx"
