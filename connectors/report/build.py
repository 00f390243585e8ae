"""Writes the review report: one index.html (template.html with page.js inlined) and, when the
report is large, data files and thumbnails beside it.

Every string from the index (file names, paths, locations) reaches the page only as JSON inside a
<script> element, escaped so that no text can close that element (`script_json`); the page puts
it into the DOM as text nodes only (page.js never sets innerHTML from data). The page is loaded
from disk: Chromium refuses fetch() over file://, but runs <script src> files, so data files are
JavaScript calls (`DeepLens.index(...)`, `DeepLens.chunk(n, ...)`).

Layout of a large report (more than one chunk of groups):
  index.html           the page, with the overview inline (totals, locations, folder pairs)
  <data>/chunk-N.js    CHUNK_SIZE groups each, in report order: everything shown of a member;
                       the page loads the chunks of the groups it shows, when it shows them
  <data>/groups.js     per group its wasted bytes, kind and members' location, folder, name and
                       tier: what filtering, searching and sorting need. The page draws the first
                       page of groups from chunk 0 before it loads this, so that 100k groups open
                       quickly (bench/report_size.py)
  <data>/thumbs/H.jpg  thumbnails, named by a hash of their bytes (exact copies share one)
A small report is index.html alone, everything inline and thumbnails as data: URIs.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from urllib.parse import unquote

from deeplens.connectors.cleanup import keep
from deeplens.connectors.cleanup.plan import Plan
from deeplens.connectors.queries.folders import folder_of
from deeplens.connectors.queries.grouping import TIERS, Group
from deeplens.connectors.storage.errors import safe_url
from deeplens.schema.models import utcnow

CHUNK_SIZE = 100  # groups per data file (the page shows 25 a page)
MEMBER_TIERS = ("kept", *TIERS)
FOLDER_PAIRS_SHOWN = 100
# What decided the kept copy, for every name keep.deciding_rule returns.
RULE_REASONS = {name: what for name, (what, _) in keep.RULES.items()} | {
    "preferred": "a preferred location (--prefer-location)",
    "uri": "nothing but the path told the copies apart",
}

Thumbnails = Callable[[list[str]], dict[str, "str | None"]]  # image ids -> base64 JPEG (Backend.thumbnails)


@dataclass
class ReportInput:
    groups: Sequence[Group]  # as grouping.py returns them: largest wasted bytes first, kept copy first
    location_totals: dict[str, tuple[int, int]]  # location -> (images, bytes), Backend.location_totals
    backend: str
    mode: str  # "exact" or "near"
    folder_pairs: list[dict] = field(default_factory=list)  # queries/folders.py folder_pairs
    plan: Plan | None = None
    created_at: datetime = field(default_factory=utcnow)


def script_json(value) -> str:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' that could end it or open a
    comment, no U+2028/U+2029 line separators that old JavaScript parsers reject."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def display_path(uri: str) -> str:
    """The URI as a person reads it: percent-decoding undone, never a password (safe_url)."""
    return unquote(safe_url(uri))


def write_report(report: ReportInput, out: Path, thumbnails: Thumbnails,
                 on_done: Callable[[int], None] = lambda count: None, chunk_size: int = CHUNK_SIZE) -> Path:
    """Write the report to `out` (a folder, or a file ending in .html) and return index.html's path.
    `thumbnails` is asked for one chunk of groups at a time, so memory stays bounded."""
    if out.suffix.lower() == ".html":
        page, data_name = out, f"{out.stem}_data"
    else:
        page, data_name = out / "index.html", "data"
    page.parent.mkdir(parents=True, exist_ok=True)
    data_dir = page.parent / data_name
    inline = len(report.groups) <= chunk_size
    chunks = [report.groups[start:start + chunk_size] for start in range(0, len(report.groups), chunk_size)]
    overview, rows = _index(report, data_name, chunk_size)
    scripts = [f"DeepLens.index({script_json(overview)});"]
    rows_text = f"DeepLens.rows({script_json(rows)});"
    if inline:
        scripts.append(rows_text)
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "groups.js").write_text(rows_text, encoding="utf-8")
    plan_facts = _plan_facts(report.plan)
    thumb = _data_uri if inline else _ThumbnailFiles(data_dir / "thumbs", f"{data_name}/thumbs")
    for number, chunk in enumerate(chunks):
        found = thumbnails([m.uuid for group in chunk for m in group.members])
        text = f"DeepLens.chunk({number},{script_json([_group_detail(g, found, thumb, plan_facts) for g in chunk])});"
        if inline:
            scripts.append(text)
        else:
            (data_dir / f"chunk-{number}.js").write_text(text, encoding="utf-8")
        on_done(len(chunk))
    template = resources.files("deeplens.connectors.report").joinpath("template.html").read_text(encoding="utf-8")
    script = resources.files("deeplens.connectors.report").joinpath("page.js").read_text(encoding="utf-8")
    data = "\n".join(f"<script>{text}</script>" for text in scripts)
    page.write_text(template.replace("/*PAGE_JS*/", script).replace("<!--DATA-->", data), encoding="utf-8")
    return page


def _index(report: ReportInput, data_name: str, chunk_size: int) -> tuple[dict, dict]:
    """The overview, and per group what the page filters and sorts on."""
    locations = sorted(report.location_totals)
    location_number = {name: i for i, name in enumerate(locations)}
    folders: dict[str, int] = {}
    wasted = {name: dict.fromkeys(TIERS, 0) for name in locations}
    rows = []
    for group in report.groups:
        members = []
        for index, m in enumerate(group.members):
            folder = folders.setdefault(display_path(folder_of(m.uri)), len(folders))
            if m.location not in location_number:  # a location the totals did not list (removed meanwhile)
                location_number[m.location] = len(locations)
                locations.append(m.location)
                wasted[m.location] = dict.fromkeys(TIERS, 0)
            members.append([location_number[m.location], folder, display_path(m.uri).rsplit("/", 1)[-1],
                            MEMBER_TIERS.index(m.tier if index else "kept")])
            if index:  # what a cleanup would remove, charged to its location (as queries/stats.py)
                wasted[m.location][m.tier] += m.size_bytes
        rows.append([group.wasted_bytes, group.kind, members])
    plan = report.plan
    return {
        "created_at": report.created_at.isoformat(timespec="seconds"),
        "backend": report.backend,
        "mode": report.mode,
        "plan": {"id": plan.id, "tiers": plan.tiers, "keep_rules": plan.keep_rules,
                 "created_at": plan.created_at.isoformat(timespec="seconds")} if plan else None,
        "tiers": MEMBER_TIERS,
        "locations": [{"name": name, "images": report.location_totals.get(name, (0, 0))[0],
                       "bytes": report.location_totals.get(name, (0, 0))[1], "wasted": wasted[name]}
                      for name in locations],
        "group_count": len(rows),
        "wasted": sum(group.wasted_bytes for group in report.groups),
        "chunk_size": chunk_size,
        "data": data_name,
        "folder_pairs": [{**pair, "a": {**pair["a"], "folder": display_path(pair["a"]["folder"])},
                          "b": {**pair["b"], "folder": display_path(pair["b"]["folder"])}}
                         for pair in report.folder_pairs[:FOLDER_PAIRS_SHOWN]],
        "folder_pairs_total": len(report.folder_pairs),
    }, {"folders": list(folders), "groups": rows}


def _group_detail(group: Group, thumbnails: dict, thumb: Callable[[str | None], str | None],
                  plan_facts: dict[str, dict]) -> dict:
    return {"wasted": group.wasted_bytes, "kind": group.kind, "members": [{
        "path": display_path(m.uri),
        "location": m.location,
        "href": safe_url(m.uri) if m.uri.startswith(("file:", "http:", "https:")) else None,  # never javascript:
        "size": m.size_bytes,
        "pixels": m.pixels,
        "modified": m.modified_at.isoformat(timespec="seconds") if m.modified_at else None,
        "tier": m.tier,
        "evidence": m.evidence.as_json() if m.evidence else None,
        "thumb": thumb(thumbnails.get(m.uuid)),
        "plan": plan_facts.get(m.uri),
    } for m in group.members]}


def _plan_facts(plan: Plan | None) -> dict[str, dict]:
    """URI -> what the plan does with the file: keep (and the rule that decided), an action, or
    why it was left out."""
    if plan is None:
        return {}
    facts = {entry.uri: {"left_out": entry.reason} for entry in plan.left_out}
    for group in plan.groups:
        facts[group.keep.uri] = {"keep": True, "rule": group.keep_rule, "why": RULE_REASONS.get(group.keep_rule, "")}
        for action in group.actions:
            facts[action.uri] = {"action": action.action, "tier": action.tier}
    return facts


def _data_uri(thumbnail: str | None) -> str | None:
    return f"data:image/jpeg;base64,{thumbnail}" if thumbnail else None


class _ThumbnailFiles:
    """Thumbnails as JPEG files named by their content: an exact copy's thumbnail is written once."""

    def __init__(self, folder: Path, href: str):
        self.folder, self.href = folder, href
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, thumbnail: str | None) -> str | None:
        if not thumbnail:
            return None
        data = base64.b64decode(thumbnail)
        name = f"{hashlib.sha256(data).hexdigest()[:20]}.jpg"
        path = self.folder / name
        if not path.exists():
            path.write_bytes(data)
        return f"{self.href}/{name}"
