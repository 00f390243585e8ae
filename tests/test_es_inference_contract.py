"""The module server as Elasticsearch's `custom` inference service sees it: the exact requests ES
builds from ingest/inference/*.yml, sent to a real module server (offline profile: image-only).

ES with x-pack cannot run here, so the requests are built the way the ES source builds them, and
each step cites the file it follows (x-pack/plugin/inference/src/main/java/org/elasticsearch/xpack/
inference/services/...):
- validation/ModelValidatorBuilder.java: a `text_embedding` endpoint gets a TextEmbeddingModelValidator
  around a SimpleServiceIntegrationValidator, whose TEST_INPUT is List.of("how big") (line 25 at
  commit 1a08e962; CustomServiceIntegrationValidator uses the same constant). PUT _inference fails
  with "validation call to service threw an exception" unless that call answers embeddings;
  TextEmbeddingModelValidator.postValidate then sets the endpoint's dimensions from the answer.
- custom/request/CustomRequest.java: POST to service_settings.url; headers from service_settings.headers,
  `${name}` in them filled from secret_parameters (`stringPlaceholderReplacer`); the body is
  service_settings.request with `${input}` replaced by the JSON array of inputs
  (RequestParameters.jsonParameters, `toJson(inputs)`).
- custom/response/TextEmbeddingResponseParser.java: json_parser.text_embeddings is a path whose first
  `[*]` is the list of embeddings and the second the floats of one (MapPathExtractor).
- custom/CustomServiceSettings.java: up to 10 inputs per request (DEFAULT_EMBEDDING_BATCH_SIZE).
"""

from __future__ import annotations

import base64
import json
import re

import httpx
import numpy as np
import pytest

from deeplens.ingest import resources
from deeplens.ingest.setup import SetupError, has_custom_inference, module_server_dims, parse_version
from deeplens.modules.phash import BITS
from deeplens.modules.routes.es_inference import ES_VALIDATION_INPUT
from deeplens.samples import jpeg_bytes, sample_photos

pytestmark = pytest.mark.elasticsearch

ES_BATCH_SIZE = 10  # CustomServiceSettings.DEFAULT_EMBEDDING_BATCH_SIZE


def es_custom_request(definition: dict, inputs: list[str]) -> tuple[str, dict[str, str], str]:
    """(url, headers, body) of the HTTP request ES's custom service makes for `inputs`."""
    settings = definition["body"]["service_settings"]
    secret_parameters = settings.get("secret_parameters", {})
    headers = {"Content-Type": "application/json"}  # CustomRequest.setHeaders: the default, then the user's
    for name, value in settings.get("headers", {}).items():
        headers[name] = re.sub(r"\$\{(\w+)\}", lambda m: secret_parameters[m.group(1)], value)
    body = settings["request"].replace("${input}", json.dumps(inputs))
    return settings["url"], headers, body


def es_parse_embeddings(definition: dict, answer: dict) -> list[list[float]]:
    """What TextEmbeddingResponseParser takes from the answer with the endpoint's json_parser path."""
    path = definition["body"]["service_settings"]["response"]["json_parser"]["text_embeddings"]
    match = re.fullmatch(r"\$\.(\w+)\[\*\]\.(\w+)\[\*\]", path)
    assert match, f"path {path} is not the list-of-lists shape this test reads"
    outer, inner = match.groups()
    embeddings = [item[inner] for item in answer[outer]]
    assert all(isinstance(value, float) for embedding in embeddings for value in embedding)
    return embeddings


def call(definition: dict, inputs: list[str]) -> httpx.Response:
    url, headers, body = es_custom_request(definition, inputs)
    return httpx.post(url, headers=headers, content=body.encode(), timeout=120)


def thumbnails(count: int) -> list[str]:
    photos = list(sample_photos().values())
    return [base64.b64encode(jpeg_bytes(photos[i % len(photos)].resize((96 + i, 64)))).decode() for i in range(count)]


@pytest.mark.parametrize("name", resources.inference_endpoint_names())
def test_endpoint_creation_probe_gets_embeddings_of_the_model_dims(modules_url: str, name: str) -> None:
    """PUT _inference/text_embedding/<name> succeeds only if this answer parses: before the module
    server recognised the probe it answered 400 (\"how big\" is no image) and ES refused the endpoint."""
    definition = resources.inference_endpoint(name, modules_url)
    response = call(definition, [ES_VALIDATION_INPUT])
    assert response.status_code == 200, response.text
    [embedding] = es_parse_embeddings(definition, response.json())
    meta = httpx.get(f"{modules_url}/meta").json()["models"]
    expected_dims = meta["semantic"]["dimensions"] if name == "deeplens-semantic" else BITS
    assert len(embedding) == expected_dims  # what ES records as the endpoint's dimensions
    assert np.linalg.norm(embedding) == pytest.approx(1.0)  # fits any similarity, cosine included


def test_semantic_endpoint_similarity_is_the_mappings(modules_url: str) -> None:
    """Without `similarity` ES records dot_product (CustomService.getCustomServiceSettings:
    `similarityFromModel == null ? SimilarityMeasure.DOT_PRODUCT`); the images mapping is cosine."""
    from deeplens.schema.elasticsearch import image_properties

    settings = resources.inference_endpoint("deeplens-semantic", modules_url)["body"]["service_settings"]
    assert settings["similarity"] == image_properties(8)["semantic"]["similarity"] == "cosine"


def test_ingest_batches_get_the_same_vectors_as_the_workers(modules_url: str) -> None:
    """A batch as ES sends it from the inference processor: one embedding per thumbnail, in order,
    equal to what /v1/features gives the scan worker for the same bytes."""
    images = thumbnails(ES_BATCH_SIZE)
    features = httpx.post(f"{modules_url}/v1/features", timeout=120, json={
        "images": [{"data": image} for image in images], "features": ["phash", "semantic"]}).json()["results"]
    semantic_def = resources.inference_endpoint("deeplens-semantic", modules_url)
    phash_def = resources.inference_endpoint("deeplens-phash", modules_url)
    semantic = es_parse_embeddings(semantic_def, call(semantic_def, images).json())
    phash = es_parse_embeddings(phash_def, call(phash_def, images).json())
    assert len(semantic) == len(phash) == ES_BATCH_SIZE
    for result, vector, bits in zip(features, semantic, phash):
        np.testing.assert_allclose(vector, result["semantic"], atol=1e-5)
        assert [int(b) for b in bits] == result["phash"]["bits"]


def test_a_bad_thumbnail_is_still_an_error(modules_url: str) -> None:
    """Only the exact probe is answered without an image: a broken thumbnail must fail the document
    (the pipeline routes it to deeplens-failures), never get a made-up vector."""
    definition = resources.inference_endpoint("deeplens-semantic", modules_url)
    for inputs in (["not an image"], [ES_VALIDATION_INPUT, thumbnails(1)[0]], ["aGVsbG8="]):
        response = call(definition, inputs)
        assert response.status_code == 400, (inputs, response.text)
        assert "input[" in response.json()["error"]


def test_keyed_module_server_gets_the_key_from_the_endpoint(keyed_modules) -> None:
    url, key = keyed_modules
    plain = resources.inference_endpoint("deeplens-semantic", url)
    assert call(plain, [ES_VALIDATION_INPUT]).status_code == 401
    keyed = resources.inference_endpoint("deeplens-semantic", url, api_key=key)
    assert keyed["body"]["service_settings"]["headers"]["Authorization"] == "Bearer ${modules_api_key}"  # no key in clear
    response = call(keyed, [ES_VALIDATION_INPUT])
    assert response.status_code == 200, response.text
    assert len(es_parse_embeddings(keyed, response.json())[0]) > 0


def test_setup_reads_meta_from_a_keyed_module_server(keyed_modules, monkeypatch) -> None:
    url, key = keyed_modules
    monkeypatch.delenv("DEEPLENS_MODULES_API_KEY", raising=False)
    with pytest.raises(SetupError, match="DEEPLENS_MODULES_API_KEY"):
        module_server_dims(url)
    monkeypatch.setenv("DEEPLENS_MODULES_API_KEY", key)
    dims, profile = module_server_dims(url)
    assert (dims, profile) == (httpx.get(f"{url}/meta", headers={"Authorization": f"Bearer {key}"}).json()["models"]["semantic"]["dimensions"], "offline")


@pytest.mark.parametrize(
    ("version", "has"),
    [("8.15.0", False), ("8.18.4", False), ("8.19.0", True), ("8.19.3", True),
     ("9.0.0", False), ("9.0.7", False), ("9.1.0", True), ("9.2.1", True), ("10.0.0", True)],
)
def test_custom_inference_service_versions(version: str, has: bool) -> None:
    """The `custom` service shipped in 8.19 and in 9.1; 9.0 does not have it."""
    assert has_custom_inference(parse_version(version)) is has
