"""Headless Chromium from Debian's packages (tests/servers/install-system-packages.sh installs
`chromium` and `chromium-driver`), driven by Selenium through that chromedriver: nothing is ever
downloaded. Used by tests/test_report.py and bench/report_size.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def unavailable() -> str | None:
    """Why headless Chromium cannot run here, or None."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return (f"{' and '.join(missing)} missing: `make test-servers` installs Debian's chromium and "
                "chromium-driver (needs root and apt-get)")
    return None


@contextmanager
def chromium(width: int = 1280, height: int = 1000) -> Iterator:
    """A selenium WebDriver on headless Chromium, closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--hide-scrollbars", f"--window-size={width},{height}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until_ready(driver, timeout_s: float = 60) -> None:
    """Until the report's page has drawn its first page of groups and its filters work (page.js
    sets data-ready, then data-filters once the rows of every group are loaded)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout_s).until(
        lambda d: d.execute_script("return document.documentElement.dataset.filters === '1'"))
