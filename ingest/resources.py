"""The data files of this package: pipelines, inference endpoints, transforms (YAML, one per file)."""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import yaml

PIPELINES_DIR = "pipelines"
INFERENCE_DIR = "inference"
TRANSFORMS_DIR = "transforms"

COMMON_PIPELINE = "deeplens-images"
INFERENCE_PIPELINE = "deeplens-images-inference"
DROP_THUMBNAIL_TAG = "drop-thumbnail"

def _load(folder: str, name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath(folder, f"{name}.yml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _names(folder: str) -> list[str]:
    return sorted(
        entry.name.removesuffix(".yml")
        for entry in resources.files(__package__).joinpath(folder).iterdir()
        if entry.name.endswith(".yml")
    )


def pipeline_names() -> list[str]:
    return _names(PIPELINES_DIR)


def pipeline(name: str, keep_thumbnails: bool = False) -> dict[str, Any]:
    """A pipeline body as PUT _ingest/pipeline/<name> takes it."""
    body = _load(PIPELINES_DIR, name)
    if keep_thumbnails:
        body["processors"] = [p for p in body["processors"] if _tag(p) != DROP_THUMBNAIL_TAG]
    return body


def _tag(processor: dict[str, Any]) -> str | None:
    [(_, options)] = processor.items()
    return options.get("tag")


def processor_types(processors: list[dict[str, Any]]) -> set[str]:
    """Every processor type in a list, including those nested in on_failure handlers and foreach."""
    found = set()
    for processor in processors:
        [(kind, options)] = processor.items()
        found.add(kind)
        found |= processor_types(options.get("on_failure", []))
        if kind == "foreach":
            found |= processor_types([options["processor"]])
    return found


def pipeline_processor_types(body: dict[str, Any]) -> set[str]:
    return processor_types(body.get("processors", [])) | processor_types(body.get("on_failure", []))


def pipelines_for(mode: str) -> list[str]:
    """Pipelines a mode needs, in install order (a pipeline processor's target first)."""
    return [COMMON_PIPELINE, INFERENCE_PIPELINE] if mode == "inference" else [COMMON_PIPELINE]


def inference_endpoint_names() -> list[str]:
    return _names(INFERENCE_DIR)


def inference_endpoint(name: str, modules_url: str, api_key: str | None = None) -> dict[str, Any]:
    """{task_type, inference_id, body} with the module server URL filled in, and with api_key (the
    module server's DEEPLENS_MODULES_API_KEY) as a secret parameter that Elasticsearch puts into the
    Authorization header: `${...}` in headers is filled from `secret_parameters`, which the
    custom service reads from service_settings (custom/request/CustomRequest.java `setHeaders`,
    CustomSecretSettings.java `SECRET_PARAMETERS`)."""
    definition = _load(INFERENCE_DIR, name)
    settings = definition["body"]["service_settings"]
    settings["url"] = settings["url"].replace("{{modules_url}}", modules_url.rstrip("/"))
    if api_key:
        settings["headers"]["Authorization"] = "Bearer ${modules_api_key}"
        settings["secret_parameters"] = {"modules_api_key": api_key}
    return definition


def transform_names() -> list[str]:
    return _names(TRANSFORMS_DIR)


def transform(name: str) -> dict[str, Any]:
    """{transform_id, body}."""
    return copy.deepcopy(_load(TRANSFORMS_DIR, name))
