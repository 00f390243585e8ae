"""`deeplens report`: the HTML review report of the demo data, opened from disk in headless Chromium
(Debian's, tests/browser.py) with its JavaScript running: groups, decoded thumbnails, the kept copy
marked, the plan's actions, hostile file names shown as text, no network. The screenshot is kept
in pytest's tmp dir (its path is printed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

from deeplens.connectors.modules_client import ModulesClient
from deeplens.connectors.queries import grouping
from deeplens.connectors.queries.weaviate import WeaviateBackend
from deeplens.connectors.report.build import ReportInput, script_json, write_report
from deeplens.samples import write_demo_locations
from tests.browser import chromium, unavailable, wait_until_ready
from tests.cli import run, run_json, weaviate_client

# Hostile names: markup in a file name (no '/'), and one whose path holds a folder '<script>alert(1)<'.
HOSTILE = ("<img src=x onerror=alert(1)>.jpg", "<script>alert(1)</script>.jpg")

needs_chromium = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")


def test_script_json_cannot_close_its_script_element():
    text = script_json({"name": "</script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"name": "</script><!-- & \u2028"}


@pytest.fixture
def demo_index(env, tmp_path) -> dict:
    """The demo's two locations, plus exact copies under hostile names, scanned into Weaviate."""
    folders = write_demo_locations(tmp_path / "demo")
    original = folders["archive"] / "coffee.jpg"
    for name in HOSTILE:
        target = folders["exports"] / "hostile" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, target)
    for name, folder in folders.items():
        run(env, "storage", "add", name, str(folder))
    run(env, "scan", "--all")
    return folders


def open_report(driver, page: Path) -> None:
    driver.get(page.as_uri())
    wait_until_ready(driver)


def rendered_groups(driver) -> list[dict]:
    """What the page shows of each group: its members' paths, tiers, kept mark, plan line and image."""
    return driver.execute_script("""
        return [...document.querySelectorAll('section.group')].map(g => ({
            number: Number(g.dataset.group),
            members: [...g.querySelectorAll('figure.member')].map(f => {
                const img = f.querySelector('img');
                return {path: f.dataset.path, tier: f.dataset.tier, kept: f.classList.contains('kept'),
                        shown_path: f.querySelector('.path').textContent,
                        plan: f.querySelector('.plan') ? f.querySelector('.plan').textContent : null,
                        image: img ? [img.complete, img.naturalWidth, img.naturalHeight] : null};
            })}));""")


def wait_for_images(driver) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return [...document.images].every(i => i.complete)"))


@needs_chromium
@pytest.mark.weaviate
@pytest.mark.slow
def test_report_of_the_demo_data_in_chromium(env, demo_index, tmp_path):
    near = run_json(env, "duplicates", "--near")["groups"]
    plan_file = tmp_path / "plan.json"
    run(env, "plan", "--out", str(plan_file))
    plan = json.loads(plan_file.read_text())
    out = tmp_path / "report"
    written = run(env, "report", "--near", "--plan", str(plan_file), "--out", str(out)).stdout
    page = out / "index.html"
    assert f"{len(near)} groups" in written and str(page) in written
    html = page.read_text()
    assert "<script>alert(1)" not in html and "<img src=x" not in html, "a file name came through as markup"
    assert not (out / "data").exists(), "a small report is index.html alone"

    with chromium() as driver:
        open_report(driver, page)
        wait_for_images(driver)
        shown = rendered_groups(driver)
        screenshot = tmp_path / "report.png"
        driver.save_screenshot(str(screenshot))
        print(f"report screenshot: {screenshot}")
        # Nothing but the page itself loads: no fonts, scripts or images from anywhere else.
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        # Filtering in the page: a hostile name finds its one group.
        driver.execute_script("""const box = document.getElementById('search');
            box.value = 'onerror'; box.dispatchEvent(new Event('input'));""")
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(driver, 10).until(
            lambda d: d.find_element("id", "count").text == f"1 of {len(near)} groups")
        filtered = rendered_groups(driver)
        scripts = driver.execute_script("return document.querySelectorAll('script').length")
        from selenium.common.exceptions import NoAlertPresentException

        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018 - an alert() from a file name would be open now

    assert resources == [], resources
    assert scripts == 4, "the page's own scripts only: page.js, the overview, the rows, one inline chunk"
    # Every group, in the order and with the members `duplicates --near` gives, the kept copy first.
    assert [g["number"] for g in shown] == list(range(1, len(near) + 1))
    for group, expected in zip(shown, near):
        assert [m["path"] for m in group["members"]] == [unquote(m["uri"]) for m in expected["members"]]
        assert [m["kept"] for m in group["members"]] == [True] + [False] * (len(expected["members"]) - 1)
        assert [m["tier"] for m in group["members"]] == [m["tier"] for m in expected["members"]]
        for member in group["members"]:
            complete, width, height = member["image"]
            assert complete and width > 0 and height > 0, f"thumbnail of {member['path']} not decoded"
    # The plan: every kept copy says which keep rule decided, every planned file its action.
    planned = {a["uri"]: a["action"] for g in plan["groups"] for a in g["actions"]}
    kept = {g["keep"]["uri"]: g["keep_rule"] for g in plan["groups"]}
    members = {m["path"]: m for g in shown for m in g["members"]}
    assert planned and kept
    for uri, action in planned.items():
        assert members[unquote(uri)]["plan"].startswith(f"plan: {action} ")
    for uri, rule in kept.items():
        assert members[unquote(uri)]["plan"].startswith(f'plan: keep; rule "{rule}" decided')
    # Hostile names are text: the exact path, as the index holds it, decoded.
    hostile = [m for m in members.values() if m["path"].rsplit("/hostile/", 1)[-1] in HOSTILE]
    assert sorted(m["shown_path"].rsplit("/hostile/", 1)[1] for m in hostile) == sorted(HOSTILE)
    assert [m["path"].rsplit("/", 1)[1] for g in filtered for m in g["members"] if "onerror" in m["path"]] == [HOSTILE[0]]


@needs_chromium
@pytest.mark.weaviate
@pytest.mark.slow
def test_large_report_loads_its_data_files_page_by_page(weaviate, modules_url, demo_index, tmp_path):
    """Past one chunk of groups the page loads data files and thumbnail files from beside it."""
    with weaviate_client(weaviate) as client, ModulesClient(modules_url) as modules:
        backend = WeaviateBackend(client, modules)
        groups = grouping.near_groups(backend, modules)
        page = write_report(ReportInput(groups, backend.location_totals(), backend.name, "near"),
                            tmp_path / "large.html", backend.thumbnails, chunk_size=2)
    data = tmp_path / "large_data"
    assert sorted(p.name for p in data.glob("chunk-*.js")) == [f"chunk-{n}.js" for n in range((len(groups) + 1) // 2)]
    assert (data / "groups.js").is_file()
    thumbs = list((data / "thumbs").glob("*.jpg"))
    members = sum(len(g.members) for g in groups)
    assert 0 < len(thumbs) < members, "exact copies share one thumbnail file"
    with chromium() as driver:
        open_report(driver, page)
        wait_for_images(driver)
        shown = rendered_groups(driver)
        sources = driver.execute_script("return [...document.images].map(i => i.getAttribute('src'))")
        # Search, with the rows from groups.js: the groups with a file or folder named like "coffee".
        driver.execute_script("""const box = document.getElementById('search');
            box.value = 'coffee'; box.dispatchEvent(new Event('input'));""")
        from selenium.webdriver.support.ui import WebDriverWait

        matching = [g for g in groups if any("coffee" in unquote(m.uri) for m in g.members)]
        WebDriverWait(driver, 10).until(
            lambda d: d.find_element("id", "count").text == f"{len(matching)} of {len(groups)} groups")
        found = rendered_groups(driver)
    assert matching and [g["number"] for g in found] == [groups.index(g) + 1 for g in matching]
    assert len(shown) == len(groups)
    assert all(m["image"][0] and m["image"][1] > 0 for g in shown for m in g["members"])
    assert all(source.startswith("large_data/thumbs/") for source in sources)


@pytest.mark.weaviate
def test_report_of_an_empty_index_says_so(env, tmp_path):
    refused = run(env, "report", "--out", str(tmp_path / "report"), ok=False)
    assert refused.exit_code == 1
    assert "holds no images, so there is nothing to report" in refused.output
    assert "deeplens scan" in refused.output
    assert not (tmp_path / "report").exists()
