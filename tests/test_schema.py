"""The data model is the only place a field name is spelled: what spells one elsewhere (query field
lists, pipelines, the transform, dashboards) is checked against the models, and both databases get
their types from the one table in schema/types.py."""

from __future__ import annotations

import re
from typing import Any

import pytest

from deeplens.dashboards.assemble import source_objects
from deeplens.ingest import resources
from deeplens.schema import elasticsearch as schema
from deeplens.schema.models import (
    DuplicateCopy, DuplicateGroup, ElasticsearchImage, ImageRecord, IngestFailure, StorageLocation, fields,
)
from deeplens.schema.weaviate import DataType, properties_of

# --- fields ----------------------------------------------------------------------------------


def test_fields_returns_the_names_in_order() -> None:
    assert fields(ImageRecord, "path", "content_sha256", "location") == ["path", "content_sha256", "location"]


def test_fields_raises_for_a_misspelled_name() -> None:
    with pytest.raises(ValueError, match=r"ImageRecord has no field 'content_sha'"):
        fields(ImageRecord, "path", "content_sha")


def test_fields_raises_for_a_field_of_another_model() -> None:
    with pytest.raises(ValueError, match=r"'semantic'"):
        fields(ImageRecord, "semantic")  # Elasticsearch alone has it
    assert fields(ElasticsearchImage, "semantic", "path") == ["semantic", "path"]


# --- one type table, two databases ------------------------------------------------------------


def test_weaviate_and_elasticsearch_types_come_from_one_table() -> None:
    weaviate = {prop.name: prop.dataType for prop in properties_of(ImageRecord)}
    assert list(weaviate) == list(ImageRecord.model_fields)
    assert weaviate["path"] == DataType.TEXT and weaviate["size_bytes"] == DataType.INT
    assert weaviate["phash_dihedral"] == DataType.TEXT_ARRAY and weaviate["thumbnail"] == DataType.BLOB
    assert weaviate["indexed_at"] == DataType.DATE
    locations = {prop.name: prop.dataType for prop in properties_of(StorageLocation)}
    assert locations["options"] == locations["last_scan"] == DataType.TEXT  # dicts as JSON text
    es = schema.model_properties(StorageLocation)
    assert es["options"] == es["last_scan"] == {"type": "object", "enabled": False}
    assert es["include"] == {"type": "keyword", "ignore_above": 4096}


def test_mapping_hints_do_not_leak_between_calls() -> None:
    schema.image_properties(512)["semantic"]["dims"] = 0
    assert schema.image_properties(8)["semantic"]["dims"] == 8
    assert "dims" not in schema.model_properties(ElasticsearchImage)["semantic"]


# --- the document the scanner indexes ---------------------------------------------------------

RECORD = ImageRecord(
    location="nas", uri="file:///srv/a/b.jpg", path="a/b.jpg", folder="a", filename="b.jpg", extension="jpg",
    size_bytes=5, content_sha256="d" * 64, phash="8f373714b7a1dfc3", thumbnail="aGVsbG8=", scan_id="scan-1",
)


def test_image_document_is_the_record_with_the_vectors() -> None:
    document = schema.image_document(RECORD, semantic=[0.6, 0.8])
    assert document == RECORD.model_dump(mode="json") | {"phash_bits": "8f373714b7a1dfc3", "semantic": [0.6, 0.8]}
    assert set(document) <= set(schema.image_properties(2))


def test_image_document_leaves_out_what_the_worker_does_not_have() -> None:
    document = schema.image_document(RECORD.model_copy(update={"phash": None, "thumbnail": None}))
    assert not {"semantic", "phash_bits", "ingested_at", "thumbnail"} & set(document)


# --- data files name only mapped fields -------------------------------------------------------

# Keys whose value is a document field, in ingest processors, transforms and Kibana saved objects.
FIELD_KEYS = {"field", "target_field", "copy_from", "input_field", "output_field", "sourceField", "secondaryFields",
              "timeFieldName"}
# Fields read or written in painless (ingest: ctx.name, ctx?.name; search: doc['name']).
SCRIPT_FIELD = re.compile(r"\bctx\??\.(\w+)|\bdoc\['(\w+)'\]")
MAPPINGS = {
    schema.IMAGES_ALIAS: set(schema.model_properties(ElasticsearchImage)),
    schema.DUPLICATE_GROUPS_INDEX: set(schema.model_properties(DuplicateGroup)),
    schema.FAILURES_INDEX: set(schema.model_properties(IngestFailure)),
    schema.DUPLICATE_COPIES_ALIAS: set(schema.model_properties(DuplicateCopy)),
}


def _named_fields(node: Any) -> set[str]:
    """Every document field a data file names, leaving out metadata and scratch (`_index`,
    `_deeplens.*`) and Lens's record count (`___records___`)."""
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in FIELD_KEYS and isinstance(value, (str, list)):
                names.update([value] if isinstance(value, str) else value)
            else:
                names |= _named_fields(value)
    elif isinstance(node, list):
        for item in node:
            names |= _named_fields(item)
    elif isinstance(node, str):
        names.update(a or b for a, b in SCRIPT_FIELD.findall(node))
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("name", resources.pipeline_names())
def test_pipeline_names_only_mapped_fields(name: str) -> None:
    body = resources.pipeline(name)
    named = _named_fields(body["processors"])
    assert named and named <= MAPPINGS[schema.IMAGES_ALIAS], named - MAPPINGS[schema.IMAGES_ALIAS]
    # A failure document is the image document plus the IngestFailure fields.
    failure = MAPPINGS[schema.IMAGES_ALIAS] | MAPPINGS[schema.FAILURES_INDEX]
    assert _named_fields(body["on_failure"]) <= failure, _named_fields(body["on_failure"]) - failure


@pytest.mark.parametrize("name", resources.transform_names())
def test_transform_reads_only_mapped_image_fields(name: str) -> None:
    body = resources.transform(name)["body"]
    assert body["source"]["index"] == [schema.IMAGES_ALIAS]
    named = _named_fields(body)
    assert named and named <= MAPPINGS[schema.IMAGES_ALIAS], named - MAPPINGS[schema.IMAGES_ALIAS]


def test_saved_objects_name_only_fields_of_their_data_views() -> None:
    objects = source_objects()
    views = {obj["id"]: obj["attributes"]["title"] for obj in objects if obj["type"] == "index-pattern"}
    checked = 0
    for obj in objects:
        titles = [views[ref["id"]] for ref in obj["references"] if ref["type"] == "index-pattern"]
        if obj["type"] == "index-pattern":
            titles.append(obj["attributes"]["title"])
        mapped = set().union(*(MAPPINGS[title] for title in titles))
        named = _named_fields(obj["attributes"])
        assert named <= mapped, (obj["id"], named - mapped)
        checked += len(named)
    assert checked
