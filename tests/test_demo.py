"""`deeplens demo`, the README's first command, end to end on a private embedded stack: it starts
the stack, indexes the bundled samples in two locations and prints their duplicate groups."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from deeplens.samples import TRANSFORMS, sample_photos
from tests.cli import deeplens, stack_env

pytestmark = [pytest.mark.weaviate, pytest.mark.slow]


def test_demo_indexes_the_samples_and_groups_every_copy_with_its_original(tmp_path):
    env = stack_env(tmp_path / "data")
    try:
        demo = deeplens("demo", env=env)
        assert demo.returncode == 0, demo.stderr
        near = json.loads(deeplens("duplicates", "--near", "--json", env=env).stdout)
    finally:
        deeplens("down", env=env)

    originals = sorted(sample_photos())[:10]  # as deeplens.samples.write_demo_locations
    assert re.search(r"^3 groups, .* wasted in total\.$", demo.stdout, re.MULTILINE), demo.stdout
    assert "Images most similar to" in demo.stdout and "coffee.jpg" in demo.stdout
    by_original = {}
    for group in near["groups"]:
        names = [unquote(m["uri"].rsplit("/", 1)[1]) for m in group["members"] if "/archive/" in m["uri"]]
        assert len(names) == 1, f"a group mixes originals: {names}"
        by_original[names[0].removesuffix(".jpg")] = {unquote(m["uri"].rsplit("/", 1)[1]) for m in group["members"]}
    edited = dict(zip(originals, list(TRANSFORMS)[:10]))
    for name, edit in edited.items():
        assert f"{name}-{edit}.jpg" in by_original.get(name, set()), f"{name}-{edit}.jpg not next to {name}.jpg"
    for name in originals[:3]:
        assert f"{name} copy.jpg" in by_original[name]
    assert near["total_wasted_bytes"] == sum(g["wasted_bytes"] for g in near["groups"])
    # The kept copy of every group is the original, not an edited copy (rotated, brightened, ...).
    assert all("/archive/" in group["members"][0]["uri"] for group in near["groups"]), near["groups"]
    # The review report of the near groups, with the plan: its path printed, the page written.
    # (Its contents in a browser: tests/test_report.py.)
    assert re.search(rf"^{len(near['groups'])} groups \(.* wasted\) in the report: ", demo.stdout, re.MULTILINE), demo.stdout
    report = re.search(r"^Open it in a browser: (file://\S+)$", demo.stdout, re.MULTILINE)
    assert report, demo.stdout
    page = Path(unquote(urlparse(report.group(1)).path))
    assert page.name == "index.html" and "DeepLens.index(" in page.read_text()
