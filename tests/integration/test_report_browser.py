"""The HTML report of a replayed stream with drift and an experiment, opened in a real
headless Chromium (Debian's ``chromium``, driven by Playwright): no console or page
errors, every section has a drawn chart (plotly's SVG, not just its div), and a
screenshot is saved (docs/report.md shows one made by the same code:
``python -m tests.data.report_stream docs/images/report.png``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from streamon.api import Monitor
from tests.data.report_stream import NOW, write

pytestmark = pytest.mark.integration

# The flags this machine needs (no network: background services would only fail), in a
# throwaway profile.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECTIONS = (
    "summary", "performance", "confusion", "calibration", "estimation", "drift",
    "integrity", "segments", "business", "experiment", "alerts",
)  # fmt: skip


def open_report(page_path: Path, screenshot: Path) -> dict[str, Any]:
    """Open the report in headless Chromium; what it drew, the errors it logged, a screenshot."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed (make setup installs it)"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.resolve().as_uri())
            page.wait_for_load_state("load")
            page.wait_for_function("document.querySelectorAll('.chart .main-svg').length > 0")
            sections = page.eval_on_selector_all(
                "section[data-section]",
                """els => els.map(e => ({
                    section: e.dataset.section,
                    charts: e.querySelectorAll('.chart').length,
                    drawn: [...e.querySelectorAll('.chart')].filter(c =>
                        c.querySelector('.main-svg g.trace, .main-svg g.hm')
                        && c.getBoundingClientRect().height > 100).length,
                    tables: e.querySelectorAll('table').length,
                }))""",
            )
            page.screenshot(path=str(screenshot), full_page=False)
        finally:
            browser.close()
    return {"sections": sections, "errors": errors}


def test_the_report_draws_every_section_in_a_real_browser(tmp_path: Path) -> None:
    config, preds, labels = write(tmp_path)
    result = Monitor(config).add_prediction_file(preds).add_label_file(labels).run(now=NOW)
    page = result.report("streamon report: simulated fraud stream").save(tmp_path / "report.html")
    shot = tmp_path / "report.png"
    seen = open_report(page, shot)
    assert seen["errors"] == []
    by_section = {s["section"].split("/", 1)[1]: s for s in seen["sections"]}
    assert tuple(by_section) == SECTIONS
    for name, s in by_section.items():
        if name == "summary":
            assert s["tables"] == 1
            continue
        assert s["charts"] >= 1 and s["drawn"] == s["charts"], f"{name}: {s['drawn']} of {s['charts']} drawn"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
