"""Python type -> database type: the one table both generators (schema/weaviate.py and
schema/elasticsearch.py) read, so a model field gets matching types in Weaviate and Elasticsearch.

Hints in a field's json_schema_extra:
- `"blob": True`: a base64 image, a Weaviate BLOB (what its modules vectorize) and an Elasticsearch
  binary kept in _source for display only;
- `"elasticsearch": {...}`: the Elasticsearch mapping of a field whose type the annotation cannot
  say (vectors).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic.fields import FieldInfo


@dataclass(frozen=True)
class DatabaseType:
    weaviate: str  # a weaviate.classes.config.DataType value (plain text: no Weaviate import for ES)
    elasticsearch: dict[str, Any]  # the field's mapping


TYPES: dict[Any, DatabaseType] = {
    # Paths, hashes and names are identifiers, matched whole; ignore_above keeps one odd path from failing a document.
    str: DatabaseType("text", {"type": "keyword", "ignore_above": 4096}),
    int: DatabaseType("int", {"type": "long"}),
    float: DatabaseType("number", {"type": "double"}),
    bool: DatabaseType("boolean", {"type": "boolean"}),
    datetime: DatabaseType("date", {"type": "date"}),
    # Options and scan summaries: JSON text in Weaviate, kept in _source unsearchable in Elasticsearch.
    dict: DatabaseType("text", {"type": "object", "enabled": False}),
}
BLOB = DatabaseType("blob", {"type": "binary", "doc_values": False})


def unwrap(annotation: Any) -> tuple[Any, bool]:
    """The type a field holds without Optional and Annotated (a generic like dict[str, str] as its
    origin), and whether the field is a list of it."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        [inner] = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return unwrap(inner)
    if origin is typing.Annotated:
        return unwrap(typing.get_args(annotation)[0])
    if origin is list:
        inner, nested = unwrap(typing.get_args(annotation)[0])
        if nested:
            raise TypeError(f"no database type for nested lists: {annotation!r}")
        return inner, True
    return origin or annotation, False


def database_type(field: FieldInfo) -> DatabaseType:
    """Both database types of a model field. The Elasticsearch mapping is a fresh dict, the
    caller's to complete (e.g. a vector's dims)."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if extra.get("blob"):
        return DatabaseType(BLOB.weaviate, dict(BLOB.elasticsearch))
    held, many = unwrap(field.annotation)
    if held not in TYPES:
        raise TypeError(f"no database type for {field.annotation!r}; add one in schema/types.py")
    found = TYPES[held]
    return DatabaseType(
        # A Weaviate array is its own type; Elasticsearch fields are multi-valued already.
        weaviate=f"{found.weaviate}[]" if many else found.weaviate,
        elasticsearch=dict(extra.get("elasticsearch", found.elasticsearch)),
    )
