"""Checks of the Elasticsearch and Kibana data files against the data model, without a server:
every field a pipeline, the transform or a dashboard names exists in the generated mapping with
a type that fits its use; every saved-object reference resolves; every processor type exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from deeplens.dashboards.assemble import ndjson, source_objects
from deeplens.ingest import resources
from deeplens.modules.phash import bits_to_hex
from deeplens.schema import elasticsearch as schema
from deeplens.schema.models import DuplicateCopy, DuplicateGroup, ElasticsearchImage, ImageRecord, IngestFailure

pytestmark = pytest.mark.elasticsearch  # the Elastic half, checked without a server

FIXTURES = Path(__file__).parent / "es_fixtures" / "pipeline"
IMAGES = schema.image_properties(semantic_dims=8)
GROUPS = schema.model_properties(DuplicateGroup)
COPIES = schema.model_properties(DuplicateCopy)
FAILURES = schema.model_properties(IngestFailure)
NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"}
AGGREGATABLE = NUMERIC | {"keyword", "date", "boolean"}


def _type(props: dict, field: str) -> str:
    assert field in props, f"field {field!r} is not in the generated mapping"
    return props[field]["type"]


def _walk(processors: list[dict]):
    for processor in processors:
        [(kind, options)] = processor.items()
        yield kind, options
        yield from _walk(options.get("on_failure", []))


def _document_field(name: str) -> bool:
    return not name.startswith("_")  # metadata (_index, _ingest...) and the _deeplens scratch object


# --- templates -------------------------------------------------------------------------------


def test_every_model_field_is_mapped_with_its_type() -> None:
    assert set(ImageRecord.model_fields) < set(IMAGES) == set(ElasticsearchImage.model_fields)
    assert IMAGES["content_sha256"]["type"] == IMAGES["phash"]["type"] == IMAGES["phash_dihedral"]["type"] == "keyword"
    assert {IMAGES[f]["type"] for f in ("size_bytes", "width", "height")} == {"long"}
    assert {IMAGES[f]["type"] for f in ("modified_at", "taken_at", "indexed_at", "ingested_at")} == {"date"}
    assert IMAGES["thumbnail"]["type"] == "binary"
    assert IMAGES["semantic"] == {"type": "dense_vector", "index": True, "similarity": "cosine", "dims": 8}
    assert IMAGES["phash_bits"] == {"type": "dense_vector", "element_type": "bit", "dims": 64, "index": True}
    assert schema.image_properties(512)["semantic"]["dims"] == 512
    assert "semantic" not in schema.model_properties(ImageRecord)  # ES-only fields do not leak into the model


def test_templates_compose_and_cover_every_index() -> None:
    templates = schema.index_templates({"mode": "precomputed"})
    components = schema.component_templates(1280)
    for name, body in templates.items():
        assert set(body["composed_of"]) <= set(components), name
    patterns = [p for body in templates.values() for p in body["index_patterns"]]
    for index in schema.indices():
        assert any(re.fullmatch(p.replace("*", ".*"), index) for p in patterns), index
    assert templates[schema.IMAGES_TEMPLATE]["_meta"]["mode"] == "precomputed"
    assert schema.indices()[schema.IMAGES_INDEX]["aliases"] == {schema.IMAGES_ALIAS: {"is_write_index": True}}


def test_duplicate_copies_template_maps_every_publish_index() -> None:
    """`duplicates --publish` creates `deeplens-duplicate-copies-<publish id>` and moves the alias
    (connectors/publish.py): the template must match those names, never the alias's own."""
    template = schema.index_templates()[schema.DUPLICATE_COPIES_TEMPLATE]
    [pattern] = template["index_patterns"]
    assert re.fullmatch(pattern.replace("*", ".*"), f"{schema.DUPLICATE_COPIES_ALIAS}-20261201t231134z-a1b2c3")
    assert not re.fullmatch(pattern.replace("*", ".*"), schema.DUPLICATE_COPIES_ALIAS)
    assert template["template"]["mappings"] == {"dynamic": "strict", "properties": COPIES}
    assert {COPIES[f]["type"] for f in ("size_bytes", "distance")} == {"long"}
    assert {COPIES[f]["type"] for f in ("tier", "group_kind", "location", "folder", "kept_location")} == {"keyword"}
    assert COPIES["published_at"]["type"] == "date" and COPIES["cross_location"]["type"] == "boolean"


# --- pipelines -------------------------------------------------------------------------------


# Where Elasticsearch 8.15+ / 9.x registers each processor type the pipelines may use (the type
# names are the classes' TYPE constants). What a cluster really has is asked at install time
# (GET _nodes/ingest, ingest/setup.py `probe`); this catches a typo or a processor from elsewhere.
INGEST_COMMON = "modules/ingest-common/src/main/java/org/elasticsearch/ingest/common/IngestCommonPlugin.java getProcessors"
MACHINE_LEARNING = "x-pack/plugin/ml/src/main/java/org/elasticsearch/xpack/ml/MachineLearning.java getProcessors"
REGISTERED_BY = {
    "set": INGEST_COMMON, "grok": INGEST_COMMON, "lowercase": INGEST_COMMON, "remove": INGEST_COMMON,
    "script": INGEST_COMMON, "pipeline": INGEST_COMMON,  # entry(PipelineProcessor.TYPE, ...)
    "inference": MACHINE_LEARNING,  # Map.of(InferenceProcessor.TYPE, inferenceFactory)
}


@pytest.mark.parametrize("name", resources.pipeline_names())
def test_pipeline_uses_only_registered_processors(name: str) -> None:
    used = resources.pipeline_processor_types(resources.pipeline(name))
    assert used <= set(REGISTERED_BY), used - set(REGISTERED_BY)


@pytest.mark.parametrize("name", resources.pipeline_names())
def test_pipeline_fields_exist_in_mapping(name: str) -> None:
    body = resources.pipeline(name)
    for kind, options in _walk(body["processors"]):
        for key in ("field", "target_field", "copy_from"):
            for field in [options[key]] if isinstance(options.get(key), str) else options.get(key, []):
                if _document_field(field):
                    _type(IMAGES, field)
        if kind == "grok":
            for pattern in options["patterns"]:
                for target in re.findall(r"%\{\w+:([\w.]+)\}", pattern):
                    assert not _document_field(target) or _type(IMAGES, target) == "keyword"
        if kind == "lowercase":
            assert _type(IMAGES, options["field"]) == "keyword"
        if kind == "inference":
            for pair in options["input_output"]:
                assert _type(IMAGES, pair["input_field"]) == "binary"
                if _document_field(pair["output_field"]):
                    assert _type(IMAGES, pair["output_field"]) == "dense_vector"
            assert options["model_id"] in resources.inference_endpoint_names()
        if kind == "script":
            for field in re.findall(r"ctx\.(\w+)\s*=[^=]", options["source"]):
                _type(IMAGES, field)
        if kind == "pipeline":
            assert options["name"] in resources.pipeline_names()
        if kind == "set" and options.get("value") == "{{{_ingest.timestamp}}}":
            assert _type(IMAGES, options["field"]) == "date"
    # on_failure writes a failure document: its fields are the IngestFailure model's.
    for kind, options in _walk(body["on_failure"]):
        if kind == "set" and _document_field(options["field"]):
            _type(FAILURES, options["field"])
        if kind == "set" and options["field"] == "_index":
            assert options["value"] == schema.FAILURES_INDEX


def test_keep_thumbnails_drops_only_the_thumbnail_step() -> None:
    default = resources.pipeline(resources.COMMON_PIPELINE)
    kept = resources.pipeline(resources.COMMON_PIPELINE, keep_thumbnails=True)
    assert len(kept["processors"]) == len(default["processors"]) - 1
    assert not any(o.get("field") == "thumbnail" for _, o in _walk(kept["processors"]))


def test_pipelines_for_each_mode() -> None:
    assert resources.pipelines_for("precomputed") == [resources.COMMON_PIPELINE]
    assert resources.pipelines_for("inference")[-1] == resources.INFERENCE_PIPELINE


@pytest.mark.parametrize("name", resources.inference_endpoint_names())
def test_inference_endpoints_point_at_the_module_server_contract(name: str) -> None:
    definition = resources.inference_endpoint(name, "http://modules:8090/")
    settings = definition["body"]["service_settings"]
    assert definition["inference_id"] == name
    assert definition["body"]["service"] == "custom"
    kind = name.removeprefix("deeplens-")
    assert settings["url"] == f"http://modules:8090/v1/es/{kind}/embeddings"  # route in modules/routes/es_inference.py
    assert json.loads(settings["request"].replace("${input}", '["aGk="]')) == {"input": ["aGk="]}
    assert settings["response"]["json_parser"]["text_embeddings"] == "$.data[*].embedding[*]"


# --- fixture pairs ---------------------------------------------------------------------------


def _fixture_pairs() -> list[Path]:
    return sorted(p for p in FIXTURES.glob("test-*.json") if not p.name.endswith("-expected.json"))


def test_every_fixture_has_its_expected_pair() -> None:
    pairs = _fixture_pairs()
    assert pairs
    for path in pairs:
        expected = path.with_name(path.stem + "-expected.json")
        assert expected.exists(), expected
        assert len(json.loads(path.read_text())["events"]) == len(json.loads(expected.read_text())["expected"])
        assert json.loads(path.read_text())["pipeline"] in resources.pipeline_names()


def test_expected_documents_fit_the_mapping() -> None:
    for path in FIXTURES.glob("*-expected.json"):
        for doc in json.loads(path.read_text())["expected"]:
            for field in doc:
                _type(IMAGES, field)
            ElasticsearchImage.model_validate(doc)


def test_inference_fixture_hash_agrees_with_the_module_server() -> None:
    events = json.loads((FIXTURES / "test-inference.json").read_text())["events"]
    expected = json.loads((FIXTURES / "test-inference-expected.json").read_text())["expected"]
    bits = np.array(events[0]["_deeplens"]["phash01"], dtype=np.uint8)
    assert expected[0]["phash"] == expected[0]["phash_bits"] == bits_to_hex(bits)


# --- transform -------------------------------------------------------------------------------

SOURCE_TYPES = {
    "sum": NUMERIC, "max": NUMERIC | {"date"}, "min": NUMERIC | {"date"}, "avg": NUMERIC,
    "value_count": AGGREGATABLE, "cardinality": AGGREGATABLE, "terms": AGGREGATABLE,
}
OUTPUT_TYPES = {"value_count": {"long"}, "cardinality": {"long"}, "sum": {"long", "double"}, "bucket_script": {"long", "double"}}


@pytest.mark.parametrize("name", resources.transform_names())
def test_transform_fields_exist_in_source_and_destination(name: str) -> None:
    body = resources.transform(name)["body"]
    assert body["source"]["index"] == [schema.IMAGES_ALIAS]
    assert body["dest"]["index"] == schema.DUPLICATE_GROUPS_INDEX
    assert _type(IMAGES, body["sync"]["time"]["field"]) == "date"
    pivot = body["pivot"]
    outputs = set()
    for out, group in pivot["group_by"].items():
        [(kind, options)] = group.items()
        assert _type(IMAGES, options["field"]) in SOURCE_TYPES[kind]
        assert _type(GROUPS, out) == _type(IMAGES, options["field"])
        outputs.add(out)
    for out, agg in pivot["aggregations"].items():
        [(kind, options)] = agg.items()
        if "field" in options:
            source_type = _type(IMAGES, options["field"])
            assert source_type in SOURCE_TYPES[kind], (out, kind, source_type)
        if kind in ("bucket_script", "bucket_selector"):
            assert set(options["buckets_path"].values()) <= set(pivot["aggregations"])
        if kind == "scripted_metric":
            for field in re.findall(r"doc\['(\w+)'\]", options["map_script"]):
                assert _type(IMAGES, field) == "keyword"
        if kind == "bucket_selector":
            continue  # filters groups, writes no field
        outputs.add(out)
        dest_type = _type(GROUPS, out)
        if kind in OUTPUT_TYPES:
            assert dest_type in OUTPUT_TYPES[kind], (out, dest_type)
        if kind in ("min", "max"):
            assert dest_type == _type(IMAGES, options["field"])
    assert outputs == set(GROUPS), "the transform and DuplicateGroup disagree on the fields of a group"


@pytest.mark.parametrize("name", resources.transform_names())
def test_pipeline_aggregation_scripts_read_only_their_buckets_paths(name: str) -> None:
    """A bucket_script/bucket_selector script sees exactly the `params` its buckets_path names
    (painless cannot run here; the container suite checks the values: test_transform_output)."""
    pivot = resources.transform(name)["body"]["pivot"]["aggregations"]
    for out, agg in pivot.items():
        [(kind, options)] = agg.items()
        if kind in ("bucket_script", "bucket_selector"):
            assert set(re.findall(r"params\.(\w+)", options["script"])) == set(options["buckets_path"]), out


def test_wasted_bytes_reads_copies_and_the_size_of_one_copy() -> None:
    pivot = resources.transform("deeplens-duplicate-groups")["body"]["pivot"]["aggregations"]
    paths = pivot["wasted_bytes"]["bucket_script"]["buckets_path"]
    assert pivot[paths["copies"]] == {"value_count": {"field": "content_sha256"}}
    assert pivot[paths["size"]] == {"max": {"field": "size_bytes"}}  # exact copies have one size


# --- dashboards ------------------------------------------------------------------------------

VIEW_MAPPINGS = {schema.IMAGES_ALIAS: IMAGES, schema.DUPLICATE_GROUPS_INDEX: GROUPS, schema.FAILURES_INDEX: FAILURES,
                 schema.DUPLICATE_COPIES_ALIAS: COPIES}
LENS_TYPES = {
    "sum": NUMERIC, "max": NUMERIC | {"date"}, "min": NUMERIC | {"date"}, "average": NUMERIC, "median": NUMERIC,
    "unique_count": AGGREGATABLE, "terms": AGGREGATABLE, "date_histogram": {"date"}, "count": AGGREGATABLE,
}


def test_saved_object_references_resolve() -> None:
    objects = source_objects()
    known = {(o["type"], o["id"]) for o in objects}
    assert len(known) == len(objects), "duplicate saved object ids"
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in known, f"{obj['type']}/{obj['id']} -> {ref}"
        if obj["type"] == "dashboard":
            names = {ref["name"] for ref in obj["references"]}
            for panel in obj["attributes"]["panelsJSON"]:
                assert f"{panel['panelIndex']}:{panel['panelRefName']}" in names
        if obj["type"] == "lens":
            layers = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
            names = {ref["name"] for ref in obj["references"]}
            assert names == {f"indexpattern-datasource-layer-{layer}" for layer in layers}
    # Every visualization is on the dashboard.
    dashboard_refs = {ref["id"] for o in objects if o["type"] == "dashboard" for ref in o["references"]}
    assert {o["id"] for o in objects if o["type"] == "lens"} <= dashboard_refs


def test_data_views_match_indices() -> None:
    for obj in source_objects():
        if obj["type"] == "index-pattern":
            props = VIEW_MAPPINGS[obj["attributes"]["title"]]
            assert _type(props, obj["attributes"]["timeFieldName"]) == "date"


def test_lens_columns_name_mapped_fields_of_fitting_type() -> None:
    views = {o["id"]: o["attributes"]["title"] for o in source_objects() if o["type"] == "index-pattern"}
    for obj in source_objects():
        if obj["type"] != "lens":
            continue
        state = obj["attributes"]["state"]
        for layer_id, layer in state["datasourceStates"]["formBased"]["layers"].items():
            [view] = [r["id"] for r in obj["references"] if r["name"].endswith(layer_id)]
            props = VIEW_MAPPINGS[views[view]]
            assert layer["columnOrder"] == list(layer["columns"])
            for column in layer["columns"].values():
                if column["sourceField"] == "___records___":
                    continue
                for field in [column["sourceField"], *column.get("params", {}).get("secondaryFields", [])]:
                    kind = _type(props, field)
                    assert kind in LENS_TYPES[column["operationType"]], (obj["id"], field, kind)
        for field in re.findall(r"(\w+)\s*[<>:]", state["query"]["query"]):
            _type(VIEW_MAPPINGS[views[obj["references"][0]["id"]]], field)


def test_ndjson_is_importable_shape() -> None:
    lines = ndjson().splitlines()
    assert len(lines) == len(source_objects())
    order = [json.loads(line)["type"] for line in lines]
    assert order == sorted(order, key=["index-pattern", "lens", "dashboard"].index)
    dashboard = json.loads(lines[-1])
    assert isinstance(dashboard["attributes"]["panelsJSON"], str)
    assert isinstance(dashboard["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"], str)


# The dashboard saved object's attributes as Kibana validates them (`unknowns: 'forbid'`):
# src/platform/plugins/shared/dashboard/server/dashboard_saved_object/schema/v1/v1.ts
# `dashboardAttributesSchema` (elastic/kibana 3c37204b, lines 21-54; time fields at 34-44).
DASHBOARD_ATTRIBUTES = {
    "title", "description", "kibanaSavedObjectMeta", "timeRestore", "timeFrom", "timeTo", "refreshInterval",
    "controlGroupInput", "panelsJSON", "optionsJSON", "hits", "version",
}


def test_dashboard_restores_a_range_that_shows_earlier_scans() -> None:
    """Every data view is time-based: without timeRestore the dashboard opens on Kibana's default
    (the last 15 minutes) and is empty for anything scanned before."""
    [dashboard] = [o for o in source_objects() if o["type"] == "dashboard"]
    attributes = dashboard["attributes"]
    assert set(attributes) <= DASHBOARD_ATTRIBUTES, set(attributes) - DASHBOARD_ATTRIBUTES
    assert attributes["timeRestore"] is True
    assert re.fullmatch(r"now-\d+y", attributes["timeFrom"]) and attributes["timeTo"] == "now"
    assert set(attributes["refreshInterval"]) == {"pause", "value"} and attributes["refreshInterval"]["pause"] is True


def _lens_layers(obj: dict):
    """(columns, XY layer) pairs of a Lens object."""
    state = obj["attributes"]["state"]
    columns = state["datasourceStates"]["formBased"]["layers"]
    for layer in state["visualization"].get("layers", []):
        yield columns[layer["layerId"]]["columns"], layer


def test_xy_accessors_are_columns_of_their_layer() -> None:
    """Lens XYDataLayerConfig (x-pack/.../lens/public/visualizations/xy/types.ts): accessors,
    yConfig[].forAccessor and splitAccessor (the breakdown) name columns of the layer's datasource."""
    for obj in source_objects():
        if obj["type"] != "lens" or obj["attributes"]["visualizationType"] != "lnsXY":
            continue
        for columns, layer in _lens_layers(obj):
            assert set(layer["accessors"]) <= set(columns), obj["id"]
            assert {y["forAccessor"] for y in layer.get("yConfig", [])} <= set(layer["accessors"]), obj["id"]
            if "splitAccessor" in layer:
                assert columns[layer["splitAccessor"]]["isBucketed"], obj["id"]


# Kibana's Lens shapes these panels use, elastic/kibana 638f9fa9 / 0a53bf11:
# - x-pack/platform/plugins/shared/lens/public/datasources/form_based/operations/definitions/terms/types.ts
#   lines 33-38: a terms column's `secondaryFields` (multi terms) and `parentFormat`, whose id is
#   'multi_terms' when there are secondary fields (as Lens itself sets it, terms/index.tsx). Lens runs
#   Elasticsearch's multi_terms aggregation for them, which x-pack analytics registers
#   (elastic/elasticsearch x-pack/plugin/analytics/.../multiterms/MultiTermsAggregationBuilder.java, NAME).
# - x-pack/platform/plugins/shared/lens/public/visualizations/xy/types.ts: SeriesTypes.BAR_HORIZONTAL_STACKED
#   ('bar_horizontal_stacked') and XYDataLayerConfig.splitAccessor (the breakdown dimension).
PER_TIER_PANELS = {"deeplens-wasted-bytes-by-location-per-tier": ["location"],
                   "deeplens-wasted-bytes-by-folder-per-tier": ["location", "folder"]}


@pytest.mark.parametrize("lens_id", PER_TIER_PANELS)
def test_published_copies_panels_show_wasted_bytes_per_tier(lens_id: str) -> None:
    """The panels over `duplicates --publish`: the copies' bytes summed by location (and folder),
    stacked by tier, so exact, near and derived copies each show."""
    [obj] = [o for o in source_objects() if o["id"] == lens_id]
    assert [r["id"] for r in obj["references"]] == [schema.DUPLICATE_COPIES_ALIAS]
    [(columns, layer)] = _lens_layers(obj)
    visualization = obj["attributes"]["state"]["visualization"]
    assert layer["seriesType"] == visualization["preferredSeriesType"] == "bar_horizontal_stacked"
    x, split, [y] = columns[layer["xAccessor"]], columns[layer["splitAccessor"]], layer["accessors"]
    assert [x["sourceField"], *x["params"].get("secondaryFields", [])] == PER_TIER_PANELS[lens_id]
    assert x["params"]["parentFormat"] == {"id": "multi_terms" if len(PER_TIER_PANELS[lens_id]) > 1 else "terms"}
    assert x["params"]["orderBy"] == {"type": "column", "columnId": y}  # the most wasted first
    assert (split["operationType"], split["sourceField"]) == ("terms", "tier")
    assert split["params"]["size"] >= len(("exact", "near", "derived"))
    assert (columns[y]["operationType"], columns[y]["sourceField"]) == ("sum", "size_bytes")
    assert columns[y]["params"]["format"]["id"] == "bytes"


def test_copies_kept_elsewhere_lists_cross_location_copies() -> None:
    [obj] = [o for o in source_objects() if o["id"] == "deeplens-copies-kept-elsewhere"]
    state = obj["attributes"]["state"]
    assert state["query"] == {"language": "kuery", "query": "cross_location : true"}
    [layer] = state["datasourceStates"]["formBased"]["layers"].values()
    rows = [c["sourceField"] for c in layer["columns"].values() if c["isBucketed"]]
    assert rows == ["location", "kept_location", "tier"]
    assert [c["columnId"] for c in state["visualization"]["columns"]] == layer["columnOrder"]


def test_formats_chart_shows_images_and_bytes() -> None:
    [obj] = [o for o in source_objects() if o["id"] == "deeplens-formats"]
    assert obj["attributes"]["description"] == "Images and bytes by format"
    [(columns, layer)] = _lens_layers(obj)
    shown = {(columns[a]["operationType"], columns[a]["sourceField"]) for a in layer["accessors"]}
    assert shown == {("count", "___records___"), ("sum", "size_bytes")}
    # Counts and bytes differ by orders of magnitude: one axis each.
    assert {y["axisMode"] for y in layer["yConfig"]} == {"left", "right"}
