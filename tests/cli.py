"""Helpers for driving the `deeplens` CLI in-process against the test servers."""

from __future__ import annotations

import json
from pathlib import Path

import weaviate
from click.testing import CliRunner

from deeplens.cli import main


def weaviate_client(endpoint) -> weaviate.WeaviateClient:
    return weaviate.connect_to_local(host=endpoint.host, port=endpoint.http_port, grpc_port=endpoint.grpc_port)


def uri(path: Path) -> str:
    return f"file://{path}"  # as DeepLens writes it: absolute, readable, not percent-encoded


def run(env: dict, *args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def run_json(env: dict, *args: str):
    return json.loads(run(env, *args, "--json").stdout)
