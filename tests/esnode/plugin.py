"""pytest plugin: the session-scoped ``elasticsearch_url`` fixture.

Loaded via ``pytest_plugins = ["tests.esnode.plugin"]`` in tests/conftest.py.
With DEEPLENS_TEST_ELASTICSEARCH_URL set, tests use that server; otherwise a real
Elasticsearch core node is built (once, cached) and started by tests/esnode/harness.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from tests.esnode import harness


@pytest.fixture(scope="session")
def elasticsearch_url(pytestconfig: pytest.Config) -> Iterator[str]:
    external = os.environ.get("DEEPLENS_TEST_ELASTICSEARCH_URL")
    if external:
        yield external.rstrip("/")
        return
    reason = harness.missing_prerequisites()
    if reason:
        pytest.skip(reason)

    # The first build downloads from Maven Central for a minute or more: show progress
    # even though pytest captures output (suspending capture only around our own prints).
    capman = pytestconfig.pluginmanager.getplugin("capturemanager")

    def log(msg: str) -> None:
        if capman is not None:
            with capman.global_and_fixture_disabled():
                print(f"\n[es-node] {msg}", file=sys.stderr, flush=True)
        else:
            print(f"[es-node] {msg}", file=sys.stderr, flush=True)

    node = harness.ElasticsearchNode(log=log)
    try:
        node.start()
        yield node.url  # type: ignore[misc]
    finally:
        node.stop()
