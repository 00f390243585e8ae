"""Size and first render time of the HTML review report (`deeplens report`) at 10k and 100k groups.

The groups are SYNTHETIC (no database, no scan): 2 to 5 members each over 4 locations and 2,000
folders, with tiers, evidence and sizes drawn at random, and 64 distinct thumbnails (256 px JPEGs of
smooth random images) shared among them, so the thumbnail files stay few; a real report writes one
file per distinct thumbnail. The report is written by connectors/report/build.py exactly as the CLI
writes it, then opened from disk in headless Chromium (Debian's, tests/browser.py):

  page weight     bytes of index.html (the page with the index of every group) + the data files
                  (chunks of group details); thumbnails are counted apart
  first render    performance.now() when the page has drawn its first page of groups (page.js
                  sets it): parse, overview, the first chunk and 25 groups
  filters ready   performance.now() when the rows of every group (groups.js) are loaded and the
                  search, filters and pager work
  filter          typing a file name into the search box until the matching groups are drawn
  last page       going to the last page (one more data file) until it is drawn

    python -m bench.report_size                   # 10k and 100k groups
    python -m bench.report_size --groups 1000     # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from deeplens.connectors.queries.grouping import TIERS, Evidence, Group, Member
from deeplens.connectors.report.build import ReportInput, write_report
from deeplens.connectors.cli.common import human_size
from deeplens.connectors.extract import extract
from deeplens.samples import jpeg_bytes, synthetic_image
from tests.browser import chromium, unavailable, wait_until_ready

LOCATIONS = ("archive", "phone-backup", "nas-photos", "s3-exports")
FOLDERS = 2000
THUMBNAILS = 64


def synthetic_groups(count: int, seed: int = 7) -> tuple[list[Group], dict[str, str]]:
    """`count` groups, largest wasted bytes first, and each member's thumbnail (base64) by id."""
    rng = random.Random(seed)
    thumbs = [extract(jpeg_bytes(synthetic_image(i, (400, 300)))).thumbnail for i in range(THUMBNAILS)]
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    groups, thumbnail_of = [], {}
    for number in range(count):
        picture = rng.randrange(THUMBNAILS)
        kind = rng.choice(TIERS)
        members = []
        for index in range(rng.randint(2, 5)):
            tier = "kept" if index == 0 else rng.choice(TIERS[:TIERS.index(kind) + 1])
            location = rng.choice(LOCATIONS)
            folder = f"{location}-root/{rng.randrange(FOLDERS):04d}/{rng.choice(['2019', '2020', 'edits'])}"
            member = Member(
                uuid=str(uuid.UUID(int=rng.getrandbits(128))), location=location,
                uri=f"file:///srv/{folder}/IMG_{number:06d}_{index}.jpg",
                size_bytes=rng.randint(200_000, 8_000_000), pixels=rng.choice([12_000_000, 8_000_000, 2_000_000]),
                content_sha256=hashlib.sha256(f"{number}-{index}".encode()).hexdigest(),
                modified_at=start + timedelta(seconds=rng.randrange(10**8)), tier=tier,
                evidence=None if index == 0 else Evidence(
                    rng.randrange(9), round(rng.random() / 6, 4) if tier == "derived" else None,
                    {"verified": True, "inliers": rng.randint(20, 200), "matches": 300, "rotation_deg": 0.0,
                     "scale": 1.1, "mirror": False} if tier == "derived" else None))
            members.append(member)
            thumbnail_of[member.uuid] = thumbs[picture]
        groups.append(Group(kind, members))
    groups.sort(key=lambda g: -g.wasted_bytes)
    return groups, thumbnail_of


def measure(count: int, root: Path, driver) -> dict:
    groups, thumbnail_of = synthetic_groups(count)
    totals = {name: (count * 3, count * 3 * 3_000_000) for name in LOCATIONS}
    started = time.perf_counter()
    page = write_report(ReportInput(groups, totals, "synthetic", "near"), root / f"report-{count}",
                        lambda ids: {i: thumbnail_of[i] for i in ids})
    build_s = time.perf_counter() - started
    data = page.parent / "data"  # beside index.html, as `deeplens report --out DIR` writes it
    chunks = list(data.glob("chunk-*.js"))
    thumbs = list((data / "thumbs").glob("*.jpg"))
    driver.get(page.as_uri())
    wait_until_ready(driver, timeout_s=300)
    first_render_ms, filters_ms = driver.execute_script("return [window.deeplensFirstRenderMs, window.deeplensFiltersMs]")
    filter_ms = _timed(driver, """
        const box = document.getElementById('search'); box.value = 'IMG_000123_';
        box.dispatchEvent(new Event('input'));""", debounce_ms=200)
    _timed(driver, """const box = document.getElementById('search'); box.value = '';
        box.dispatchEvent(new Event('input'));""")  # every group again
    last_page_ms = _timed(driver, "document.querySelector('#pager-top button:last-of-type').click();")
    return {"groups": count, "members": sum(len(g.members) for g in groups), "build_s": build_s,
            "index_html": page.stat().st_size, "rows_bytes": (data / "groups.js").stat().st_size,
            "chunks": len(chunks), "chunk_bytes": sum(p.stat().st_size for p in chunks),
            "first_chunk": (data / "chunk-0.js").stat().st_size,
            "thumb_files": len(thumbs), "thumb_bytes": sum(p.stat().st_size for p in thumbs),
            "first_render_ms": first_render_ms, "filters_ms": filters_ms, "filter_ms": filter_ms, "last_page_ms": last_page_ms}


def _timed(driver, script: str, debounce_ms: int = 0) -> float:
    """Milliseconds from running `script` until the page has drawn again, less the search box's debounce."""
    before = driver.execute_script("return Number(document.documentElement.dataset.rendered)")
    started = time.perf_counter()
    driver.execute_script(script)
    while driver.execute_script("return Number(document.documentElement.dataset.rendered)") == before:
        time.sleep(0.005)
    return (time.perf_counter() - started) * 1000 - debounce_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", default="10000,100000", help="comma-separated group counts")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        raise SystemExit(reason)
    print("| groups | members | build | index.html | groups.js | chunks | page weight | first render reads "
          "| thumbnails (64 distinct) | first render | filters ready | search | last page |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as root, chromium() as driver:
        for count in (int(n) for n in args.groups.split(",")):
            r = measure(count, Path(root), driver)
            whole = r["index_html"] + r["rows_bytes"] + r["chunk_bytes"]
            first = r["index_html"] + r["first_chunk"]  # what the first render reads
            print(f"| {r['groups']:,} | {r['members']:,} | {r['build_s']:.1f} s | {human_size(r['index_html'])} "
                  f"| {human_size(r['rows_bytes'])} | {r['chunks']} files, {human_size(r['chunk_bytes'])} "
                  f"| {human_size(whole)} | {human_size(first)} | {r['thumb_files']} files, {human_size(r['thumb_bytes'])} "
                  f"| {r['first_render_ms']:.0f} ms | {r['filters_ms']:.0f} ms | {r['filter_ms']:.0f} ms "
                  f"| {r['last_page_ms']:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
