"""Assemble the saved objects (one JSON file each under objects/<type>/) into the NDJSON that
Kibana's saved objects import API takes.

In the source files the JSON-in-a-string attributes (`panelsJSON`, `optionsJSON`,
`kibanaSavedObjectMeta.searchSourceJSON`) are plain objects, so they read and diff well; this
step turns them into the strings Kibana stores. Objects come out in dependency order: data
views, then visualizations, then dashboards.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

ORDER = ("index-pattern", "lens", "dashboard")
STRINGIFIED = ("panelsJSON", "optionsJSON")


def source_objects() -> list[dict[str, Any]]:
    """The saved objects as stored in this package, in dependency order."""
    root = resources.files(__package__).joinpath("objects")
    objects = []
    for kind in ORDER:
        folder = root.joinpath(kind)
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".json"):
                obj = json.loads(entry.read_text(encoding="utf-8"))
                if obj["type"] != kind or entry.name != f"{obj['id']}.json":
                    raise ValueError(f"objects/{kind}/{entry.name}: type and id must match its folder and file name")
                objects.append(obj)
    return objects


def for_import(obj: dict[str, Any]) -> dict[str, Any]:
    obj = json.loads(json.dumps(obj))
    attributes = obj["attributes"]
    for key in STRINGIFIED:
        if key in attributes and not isinstance(attributes[key], str):
            attributes[key] = json.dumps(attributes[key], separators=(",", ":"))
    meta = attributes.get("kibanaSavedObjectMeta", {})
    if "searchSourceJSON" in meta and not isinstance(meta["searchSourceJSON"], str):
        meta["searchSourceJSON"] = json.dumps(meta["searchSourceJSON"], separators=(",", ":"))
    return obj


def ndjson() -> str:
    return "".join(json.dumps(for_import(obj), separators=(",", ":")) + "\n" for obj in source_objects())
