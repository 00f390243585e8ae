"""`deeplens es setup`: install templates, indices, pipelines, inference endpoints and the
duplicates transform into a cluster, as far as the cluster supports them; idempotent.

What a cluster can do is asked, never assumed: the version from GET /, the licence from
GET _license (a node without x-pack has no such route and answers 400/404: no inference API),
ingest processor types from GET _nodes/ingest, the transform API by calling it. What is not
supported is reported, and the rest is still installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from elasticsearch import ApiError, Elasticsearch, NotFoundError

from deeplens.config import Settings
from deeplens.connectors.modules_client import ModulesClient
from deeplens.ingest import resources
from deeplens.ingest.bulk import describe_error
from deeplens.modules.profiles import PROFILES
from deeplens.schema import elasticsearch as schema

Mode = Literal["auto", "inference", "precomputed"]
INFERENCE_LICENCES = {"enterprise", "trial"}
# The `custom` inference service arrived in 8.19 and 9.1: 9.0 does not have it.
CUSTOM_INFERENCE_SINCE = {8: (8, 19), 9: (9, 1)}


class SetupError(Exception):
    """The cluster cannot hold DeepLens at all (or not in the mode asked for)."""


@dataclass
class Capabilities:
    version: str
    version_tuple: tuple[int, int]
    licence: str | None  # None: no _license API
    inference_api: bool
    inference_reason: str
    processors: set[str]
    transforms: bool

    def missing_processors(self, body: dict[str, Any]) -> list[str]:
        return sorted(resources.pipeline_processor_types(body) - self.processors)


@dataclass
class SetupReport:
    mode: str = ""
    pipeline: str | None = None
    done: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_version(number: str) -> tuple[int, int]:
    major, minor, *_ = (int("".join(ch for ch in part if ch.isdigit()) or 0) for part in number.split("."))
    return major, minor


def has_custom_inference(version: tuple[int, int]) -> bool:
    """8.19+ in 8.x, 9.1+ in 9.x, any later major (clusters before 8.15 are refused earlier)."""
    major = version[0]
    return version >= CUSTOM_INFERENCE_SINCE.get(major, (major, 0))


def probe(es: Elasticsearch) -> Capabilities:
    number = es.info()["version"]["number"]
    version = parse_version(number)
    if version < schema.MIN_ES_VERSION:
        need = ".".join(map(str, schema.MIN_ES_VERSION))
        raise SetupError(
            f"Elasticsearch {number} is too old: DeepLens needs >= {need} "
            f"(dense_vector element_type 'bit' for the pHash); upgrade the cluster"
        )

    licence, inference_api, reason = None, False, ""
    try:
        info = es.license.get()["license"]
        licence = f"{info['type']} ({info['status']})"
        if info["type"] in INFERENCE_LICENCES and info["status"] == "active":
            if has_custom_inference(version):
                inference_api, reason = True, f"licence {licence} includes the inference API"
            else:
                reason = f"Elasticsearch {number} has no `custom` inference service (it needs 8.19+ or 9.1+)"
        else:
            reason = f"licence {licence} has no inference API (it needs Enterprise or a trial)"
    except ApiError as exc:
        if exc.meta.status not in (400, 404):
            raise
        reason = "the cluster has no _license API (no x-pack: a core node), so no inference API"

    nodes = es.nodes.info(metric="ingest")["nodes"].values()
    per_node = [{p["type"] for p in node.get("ingest", {}).get("processors", [])} for node in nodes]
    processors = set.intersection(*per_node) if per_node else set()

    try:
        es.transform.get_transform(size=1)
        transforms = True
    except ApiError as exc:
        if exc.meta.status not in (400, 404, 405):
            raise
        transforms = False
    return Capabilities(number, version, licence, inference_api, reason, processors, transforms)


def module_server_dims(modules_url: str) -> tuple[int, str]:
    """The semantic embedding dims of the module server at modules_url and its profile, from GET /meta."""
    url = f"{modules_url.rstrip('/')}/meta"
    try:
        with ModulesClient(modules_url, timeout=10) as modules:  # sends DEEPLENS_MODULES_API_KEY if set
            meta = modules.meta()
    except httpx.HTTPStatusError as exc:
        problem = _error_of(exc.response)
    except (httpx.HTTPError, ValueError) as exc:
        problem = str(exc) or type(exc).__name__
    else:
        try:
            return int(meta["models"]["semantic"]["dimensions"]), meta["profile"]
        except (KeyError, TypeError, ValueError):
            problem = "the answer has no models.semantic.dimensions (not a DeepLens module server?)"
    known = ", ".join(f"{profile.dims} for the {name} profile" for name, profile in PROFILES.items())
    raise SetupError(
        f"cannot read the embedding dimensions from the module server at {url}: {problem}. "
        f"Fix: start it with `deeplens up` (or point --modules-url at a running one), "
        f"or pass --semantic-dims ({known})"
    )


def _error_of(response: httpx.Response) -> str:
    """The module server's own error message (it says how to fix a missing key), else the status."""
    try:
        return f"HTTP {response.status_code}: {response.json()['error']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def setup(
    es: Elasticsearch,
    mode: Mode = "auto",
    modules_url: str = "http://127.0.0.1:8090",
    semantic_dims: int | None = None,
    keep_thumbnails: bool = False,
    start_transforms: bool = True,
) -> SetupReport:
    """semantic_dims: None asks the module server at modules_url, whose vectors the index will hold."""
    report = SetupReport()
    if semantic_dims is None:
        semantic_dims, profile = module_server_dims(modules_url)
        report.notes.append(f"semantic vectors: {semantic_dims}-d, from the module server at {modules_url} (profile {profile})")
    caps = probe(es)
    report.notes.append(f"Elasticsearch {caps.version}; licence: {caps.licence or 'none (no _license API)'}")
    if mode == "auto":
        mode = "inference" if caps.inference_api else "precomputed"
        report.notes.append(f"mode {mode}: {caps.inference_reason}")
    elif mode == "inference" and not caps.inference_api:
        raise SetupError(f"--mode inference is not possible: {caps.inference_reason}; use --mode precomputed")
    report.mode = mode

    # Pipelines first (the templates record which one workers should use).
    pipelines = {name: resources.pipeline(name, keep_thumbnails) for name in resources.pipelines_for(mode)}
    missing = {name: caps.missing_processors(body) for name, body in pipelines.items()}
    if any(missing.values()):
        for name, types in missing.items():
            if types:
                report.unsupported.append(
                    f"pipeline {name} not installed: ingest processors missing on this cluster: {', '.join(types)} "
                    f"(a default Elasticsearch distribution has them)"
                )
        report.notes.append("documents are indexed without a pipeline: no ingested_at, no derived fields, no failure routing")
    else:
        if mode == "inference":
            key = Settings().modules_api_key  # Elasticsearch must send it too, if the module server has one
            for name in resources.inference_endpoint_names():
                definition = resources.inference_endpoint(name, modules_url, key and key.get_secret_value())
                report.done.append(_put_inference_endpoint(es, definition))
        for name, body in pipelines.items():
            es.ingest.put_pipeline(id=name, **body)
            report.done.append(f"pipeline {name}")
        report.pipeline = resources.INFERENCE_PIPELINE if mode == "inference" else resources.COMMON_PIPELINE

    meta = {"mode": mode, "pipeline": report.pipeline}
    try:
        report.done += schema.install(es, semantic_dims, meta)
    except ValueError as exc:
        raise SetupError(str(exc)) from None

    if not caps.transforms:
        report.unsupported.append(
            "transform deeplens-duplicate-groups not installed: the cluster has no transform API "
            "(x-pack); exact duplicates are still a terms aggregation on content_sha256"
        )
    else:
        for name in resources.transform_names():
            report.done.append(_put_transform(es, resources.transform(name), start_transforms))
    return report


def _put_inference_endpoint(es: Elasticsearch, definition: dict[str, Any]) -> str:
    task, inference_id, body = definition["task_type"], definition["inference_id"], definition["body"]
    path = f"/_inference/{task}/{inference_id}"
    try:
        existing = es.perform_request("GET", path, headers={"accept": "application/json"})
        [endpoint] = existing["endpoints"]
        wanted = body["service_settings"]
        if all(endpoint["service_settings"].get(key) == wanted.get(key) for key in ("url", "headers")):
            return f"inference endpoint {inference_id} (exists)"
        # Pipelines reference it by id; force replaces it in place.
        es.perform_request("DELETE", f"{path}?force=true", headers={"accept": "application/json"})
    except NotFoundError:
        pass
    url = body["service_settings"]["url"]
    try:
        es.perform_request(
            "PUT", path, body=body, headers={"accept": "application/json", "content-type": "application/json"}
        )
    except ApiError as exc:
        # Elasticsearch calls the endpoint once before accepting it (modules/routes/es_inference.py).
        error = exc.body.get("error") if isinstance(exc.body, dict) else exc.body
        raise SetupError(
            f"Elasticsearch refused inference endpoint {inference_id}: {describe_error(error)}. "
            f"Fix: Elasticsearch itself must reach the module server at {url}: pass --modules-url as "
            f"Elasticsearch sees it (and set DEEPLENS_MODULES_API_KEY if the module server has a key), "
            f"or use --mode precomputed"
        ) from None
    return f"inference endpoint {inference_id} -> {url}"


def _put_transform(es: Elasticsearch, definition: dict[str, Any], start: bool) -> str:
    transform_id, body = definition["transform_id"], definition["body"]
    try:
        es.transform.get_transform(transform_id=transform_id)
        state = f"transform {transform_id} (exists)"
    except NotFoundError:
        es.transform.put_transform(transform_id=transform_id, defer_validation=True, **body)
        state = f"transform {transform_id}"
    if start:
        stats = es.transform.get_transform_stats(transform_id=transform_id)["transforms"][0]
        if stats["state"] in ("stopped", "failed"):
            es.transform.start_transform(transform_id=transform_id)
        state += " (started)"
    return state


def rebuild_transforms(es: Elasticsearch) -> list[str]:
    """Recompute the duplicate groups from scratch; the scan calls this after it deleted or changed
    documents. A continuous transform only revisits the groups of source documents newer than its
    last checkpoint (by `ingested_at`), so a deleted copy, or a copy whose content changed, leaves
    its old group's row as it was. Reset stops the transform and clears its checkpoints, but keeps a
    destination index it did not create (x-pack/plugin/transform/.../TransportResetTransformAction.java
    `deleteDestinationIndexIfCreatedByTheTransform`; setup creates it from the template), and
    groups that fell to one copy are never written again, so the index is emptied here before the
    start. Returns the transforms rebuilt: none on a cluster without the transform API or without
    `deeplens es setup`'s transforms."""
    rebuilt = []
    for name in resources.transform_names():
        definition = resources.transform(name)
        transform_id, dest = definition["transform_id"], definition["body"]["dest"]["index"]
        try:
            es.transform.reset_transform(transform_id=transform_id, force=True)
        except NotFoundError:
            continue  # not installed (or no transform API at all)
        except ApiError as exc:
            if exc.meta.status not in (400, 405):
                raise
            continue  # no transform API (a core node)
        es.options(ignore_status=404).indices.delete(index=dest)
        es.indices.create(index=dest, **schema.indices()[dest])  # mappings from the template
        es.transform.start_transform(transform_id=transform_id)
        rebuilt.append(transform_id)
    return rebuilt


def configured_pipeline(es: Elasticsearch) -> str | None:
    """The pipeline `deeplens es setup` installed for image documents, or None (index without one)."""
    try:
        templates = es.indices.get_index_template(name=schema.IMAGES_TEMPLATE)["index_templates"]
    except NotFoundError:
        raise SetupError(f"no index template {schema.IMAGES_TEMPLATE}: run `deeplens es setup` first") from None
    return templates[0]["index_template"].get("_meta", {}).get("pipeline")
