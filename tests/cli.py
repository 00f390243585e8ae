"""Helpers for driving the `deeplens` CLI: in-process against the test servers, or as a process
with a stack of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import weaviate
from weaviate.classes.init import Auth
from click.testing import CliRunner

from deeplens.cli import main
from deeplens.processes import free_port


def weaviate_client(endpoint) -> weaviate.WeaviateClient:
    return weaviate.connect_to_local(host=endpoint.host, port=endpoint.http_port, grpc_port=endpoint.grpc_port,
                                     auth_credentials=Auth.api_key(endpoint.api_key))


def uri(path: Path) -> str:
    return path.as_uri()  # as DeepLens writes it: absolute, percent-encoded (RFC 8089)


def run(env: dict, *args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def run_json(env: dict, *args: str):
    return json.loads(run(env, *args, "--json").stdout)


def stack_env(data_dir: Path) -> dict[str, str]:
    """Settings for a private embedded stack: its own data dir and free ports."""
    return {
        **os.environ,
        "DEEPLENS_DATA_DIR": str(data_dir),
        "DEEPLENS_WEAVIATE_URL": f"http://127.0.0.1:{free_port()}",
        "DEEPLENS_WEAVIATE_GRPC_PORT": str(free_port()),
        "DEEPLENS_MODULES_URL": f"http://127.0.0.1:{free_port()}",
    }


def deeplens(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deeplens", *args], env=env, capture_output=True, text=True, timeout=600
    )
