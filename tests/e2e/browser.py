"""Debian's headless Chromium for the tests that open pages (the report, the studio), its console, and
axe-core (from the npm registry, installed by `make browser` into tests/browser) run inside the page."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
AXE = Path(__file__).resolve().parents[1] / "browser" / "node_modules" / "axe-core" / "axe.min.js"

needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian chromium and chromium-driver are not installed (make browser)",
)
needs_axe = pytest.mark.skipif(not AXE.is_file(), reason="axe-core is not installed (make browser, with npm)")


def chromium(profile: Path, size: str = "1300,3000"):
    """A headless Chromium that keeps its console log, in a profile of its own; nothing from the network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={size}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(60)
    return driver


def console_problems(driver) -> list[dict]:
    """The console's errors and warnings since the last call (reading the log empties it)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]


def axe_violations(driver) -> list[dict]:
    """axe-core's violations on the page now open (WCAG 2.x A and AA rules and its best practices): for each,
    the rule, its impact and the elements it found."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(AXE.read_text(encoding="utf-8"))
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then("
        "  r => done(r.violations.map(v => ({rule: v.id, impact: v.impact, help: v.help,"
        "                                    nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))),"
        "  e => done([{rule: 'axe failed', impact: 'critical', help: String(e), nodes: []}]));"
    )
