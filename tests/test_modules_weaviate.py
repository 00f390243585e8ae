"""The module server behind a real Weaviate: named vectors `semantic` (cosine) and `phash`
(hamming) through multi2vec-clip with per-vector inferenceUrl, and the img2vec-neural module."""

from __future__ import annotations

import io

import httpx
import pytest
import weaviate as weaviate_lib
import weaviate.classes as wvc
from PIL import Image

from deeplens.samples import jpeg_bytes, sample_photos
from deeplens.schema.weaviate import IMAGE_COLLECTION, image_vectors
from tests.cli import run, run_json, weaviate_client
from tests.test_modules_contract import b64, encode, metric_samples, photo

pytestmark = pytest.mark.weaviate

# Distinct real photos (skimage's "cat" is chelsea again, so it is not among them).
UNRELATED = ("astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "camera", "brick")
ORIGINAL = "chelsea"


def recompressed_copy(name: str) -> bytes:
    """What a duplicate usually is: the same photo resized and saved again at a lower quality."""
    image = Image.open(io.BytesIO(encode(photo(name, 451), quality=92))).convert("RGB")
    return encode(image.resize((300, 200), Image.Resampling.BILINEAR), quality=60)


@pytest.fixture(scope="module")
def client(weaviate):
    with weaviate_client(weaviate) as connection:
        yield connection


PROBE_PROPERTIES = [
    wvc.config.Property(name="label", data_type=wvc.config.DataType.TEXT),
    wvc.config.Property(name="thumbnail", data_type=wvc.config.DataType.BLOB),
]


@pytest.fixture(scope="module")
def photos(client: weaviate_lib.WeaviateClient, modules_url: str):
    name = "DeepLensModulesProbe"
    client.collections.delete(name)
    # The named vectors exactly as DeepLens defines them (cosine semantic, hamming phash).
    collection = client.collections.create(name, properties=PROBE_PROPERTIES, vector_config=image_vectors(modules_url))
    images = {label: encode(photo(label, 451), quality=92) for label in (ORIGINAL, *UNRELATED)}
    images["copy"] = recompressed_copy(ORIGINAL)
    result = collection.data.insert_many(
        [wvc.data.DataObject(properties={"label": label, "thumbnail": b64(data)}) for label, data in images.items()]
    )
    assert not result.has_errors, result.errors
    yield collection, images
    client.collections.delete(name)


def test_objects_get_both_named_vectors(photos):
    collection, images = photos
    objects = collection.query.fetch_objects(limit=20, include_vector=True).objects
    assert len(objects) == len(images)
    for obj in objects:
        assert len(obj.vector["semantic"]) == 1280
        assert set(obj.vector["phash"]) <= {0.0, 1.0} and len(obj.vector["phash"]) == 64


def test_near_image_on_phash_finds_the_recompressed_copy(photos):
    collection, images = photos
    found = collection.query.near_image(
        b64(images[ORIGINAL]), target_vector="phash", limit=4, return_metadata=wvc.query.MetadataQuery(distance=True)
    ).objects
    distances = {obj.properties["label"]: obj.metadata.distance for obj in found}
    labels = [obj.properties["label"] for obj in found]
    # The copy may hash identically (a tie at 0 with the original), so the first two are a set.
    assert set(labels[:2]) == {ORIGINAL, "copy"}, distances
    assert distances[ORIGINAL] == 0 and distances["copy"] <= 6, distances  # a few of 64 bits
    assert all(distances[label] >= 16 for label in labels[2:]), distances  # unrelated photos are far
    # And from the copy's side: the original is the nearest other image.
    from_copy = collection.query.near_image(b64(images["copy"]), target_vector="phash", limit=2).objects
    assert {obj.properties["label"] for obj in from_copy} == {ORIGINAL, "copy"}


def test_near_image_on_semantic_ranks_the_copy_right_after_the_original(photos):
    collection, images = photos
    found = collection.query.near_image(
        b64(images[ORIGINAL]), target_vector="semantic", limit=3, return_metadata=wvc.query.MetadataQuery(distance=True)
    ).objects
    assert [obj.properties["label"] for obj in found[:2]] == [ORIGINAL, "copy"]
    assert found[0].metadata.distance < 1e-4
    assert found[1].metadata.distance < found[2].metadata.distance


def test_img2vec_neural_module(client: weaviate_lib.WeaviateClient):
    # img2vec-neural has no per-collection URL: Weaviate calls IMAGE_INFERENCE_API/vectors, which the
    # fixture points at the same module server.
    name = "DeepLensImg2VecProbe"
    client.collections.delete(name)
    collection = client.collections.create(
        name,
        properties=PROBE_PROPERTIES,
        vector_config=wvc.config.Configure.Vectors.img2vec_neural(name="neural", image_fields=["thumbnail"]),
    )
    try:
        for label in ("coffee", "rocket", ORIGINAL):
            collection.data.insert({"label": label, "thumbnail": b64(encode(photo(label, 451), quality=92))})
        [first] = collection.query.near_image(b64(recompressed_copy(ORIGINAL)), target_vector="neural", limit=1).objects
        assert first.properties["label"] == ORIGINAL
        [obj] = collection.query.fetch_objects(limit=1, include_vector=True).objects
        assert len(obj.vector["neural"]) == 1280
    finally:
        client.collections.delete(name)


def vectorize_calls(modules_url: str) -> float:
    """Requests the module server has answered on Weaviate's /semantic/vectorize, from its /metrics."""
    with httpx.Client(base_url=modules_url) as modules:
        return sum(value for (name, labels), value in metric_samples(modules).items()
                   if name == "deeplens_requests_total" and dict(labels)["route"] == "/semantic/vectorize")


def test_a_scan_of_a_modules_collection_brings_both_vectors(env, client, modules_url, tmp_path):
    """The scan fetches `semantic` with the pHashes (32 thumbnails per /v1/features call), so Weaviate
    calls no module for the scanned images; what it stores is what its own module makes of the
    stored thumbnail."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, image in list(sample_photos().items())[:6]:
        (folder / f"{name}.jpg").write_bytes(jpeg_bytes(image))
    assert "with modules vectors" in run(env, "schema", "apply").output
    run(env, "storage", "add", "photos", str(folder))
    before = vectorize_calls(modules_url)
    [summary] = run_json(env, "scan", "photos")
    assert (summary["new"], summary["errors"]) == (6, 0)
    assert vectorize_calls(modules_url) == before

    images = client.collections.use(IMAGE_COLLECTION)
    stored = images.query.fetch_objects(limit=10, include_vector=True, return_properties=["thumbnail"]).objects
    assert len(stored) == 6 and all(set(obj.vector) == {"phash", "semantic"} for obj in stored)
    for obj in stored:
        [itself] = images.query.near_image(obj.properties["thumbnail"], target_vector="semantic", limit=1,
                                          return_metadata=wvc.query.MetadataQuery(distance=True)).objects
        assert itself.uuid == obj.uuid and itself.metadata.distance < 1e-5, itself.metadata.distance
