"""report.html in a real browser: Debian's Chromium, headless, driven by Playwright.

Fails on any console error or page error and on any request that leaves the file (the page must
open from a CI artifact with no network); checks the main elements and keeps a screenshot under
reports/ for people to look at. scripts/setup.sh installs Chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from renderchaos.report.page import ReportInputs, render_html
from renderchaos.report.synthetic import synthetic_doc

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "reports"
CHROMIUM = os.environ.get("RENDERCHAOS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: expected Debian's chromium (scripts/setup.sh installs it: "
                    "apt-get install chromium), or set RENDERCHAOS_CHROMIUM", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"playwright is not installed ({exc}): pip install -e '.[dev]'", pytrace=False)
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp("chromium-profile")),
                                                   executable_path=CHROMIUM, headless=True, args=ARGS,
                                                   viewport={"width": 1320, "height": 1000})
        try:
            yield ctx
        finally:
            ctx.close()


class Opened:
    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        self.requests: list[str] = []


def open_page(browser: Any, path: Path) -> Opened:
    page = browser.new_page()
    o = Opened(page)
    page.on("console", lambda m: o.problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: o.problems.append(f"page error: {e}"))
    page.on("request", lambda r: o.requests.append(r.url))
    page.goto(path.as_uri(), wait_until="load")
    return o


def check_page(o: Opened, doc: dict[str, Any]) -> None:
    page = o.page
    assert page.locator("header#verdict").is_visible()
    assert page.locator("header#verdict .verdict").inner_text() in ("PASSED", "FAILED", "INTERRUPTED")
    assert page.locator("section#coverage").count() == 1
    if doc.get("runbooks"):
        assert page.locator("table.matrix tbody tr").count() >= sum(len(r.get("sections", []))
                                                                    for r in doc["runbooks"])
    windows = page.locator("svg.timeline rect.fault-window")
    assert windows.count() >= 1, "no timeline with a shaded fault window"
    first = windows.first
    first.scroll_into_view_if_needed()
    box = first.bounding_box()
    assert box is not None and box["width"] > 1 and box["height"] > 20
    outside = [u for u in o.requests if not u.startswith(("file:", "data:", "about:"))]
    assert not outside, f"the page fetched {outside}: it must be self-contained"
    assert not o.problems, "\n".join(o.problems)


def test_synthetic_report_in_chromium(browser: Any, tmp_path: Path) -> None:
    doc = synthetic_doc(40, failures=1)
    doc["results"][5]["samples"] = None  # one without samples
    doc["results"][6]["faults"][0].update(healed_at=None, heal_error="could not remove the toxic")
    doc["results"][6]["faults_active_at_end"] = 1
    path = tmp_path / "report.html"
    path.write_text(render_html(doc, ReportInputs()))
    o = open_page(browser, path)
    check_page(o, doc)
    page = o.page
    # leads with the failure: the first section after the nav is the failure with its timeline
    assert page.locator("main > section").first.get_attribute("id") == "failures"
    assert page.locator("#failures article svg.timeline rect.fault-window").count() == 1
    assert page.locator("table.matrix tr.gap").count() == 1
    no_samples = doc["results"][5]["id"]
    assert "no samples" in page.locator(f"details.scenario:has(b:text-is('{no_samples}'))").text_content()
    # the outcome filter leaves only the failed scenario
    page.select_option("#outcome-filter", "failed")
    assert page.locator("table.overview tbody tr:visible").count() == 1
    page.select_option("#outcome-filter", "")
    assert page.locator("table.overview tbody tr:visible").count() == 40
    page.click("#expand-all")
    assert page.locator("details.scenario[open]").count() == 40
    page.click("button.copy >> nth=0")  # no clipboard on file://: falls back to selecting, no error
    page.set_viewport_size({"width": 1320, "height": 2000})
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(tmp_path / "top.png"))
    REPORTS.mkdir(exist_ok=True)
    page.screenshot(path=str(REPORTS / "report-screenshot-synthetic.png"))
    assert not o.problems, "\n".join(o.problems)


#: A small real run when no results.json of one is at hand: the reference stack, three scenarios
#: with faults (a stopped database and cache, a credential case), about half a minute warm.
REAL_SELECTION = "[db.down] or [redis.down] or [api.auth]"


def _real_results(tmp_path: Path) -> Path:
    """results.json of a real run: RENDERCHAOS_REAL_RESULTS, else reports/results.json when it is a
    real run's (not a synthetic one), else a small real run made here."""
    given = os.environ.get("RENDERCHAOS_REAL_RESULTS")
    candidates = [Path(given)] if given else [REPORTS / "results.json"]
    for path in candidates:
        if path.is_file():
            doc = json.loads(path.read_text())
            if not str(doc.get("run_id", "")).startswith("synthetic") and doc.get("results"):
                return path
        elif given:
            pytest.fail(f"RENDERCHAOS_REAL_RESULTS={given}: no such file", pytrace=False)
    import fcntl
    import subprocess
    import sys

    out = tmp_path / "real-run"
    cmd = [sys.executable, "-m", "pytest", "suites", "-p", "no:cacheprovider", "-q", "--chaos-profile", "all",
           "-k", REAL_SELECTION, "--chaos-reports", str(out), "--basetemp", str(out / "tmp")]
    with open(REPORTS / ".suite-runs.lock", "w") as lock:  # beside the mutation runs, as they share
        fcntl.flock(lock, fcntl.LOCK_SH)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    path = out / "results.json"
    assert path.is_file(), f"the real run wrote no results.json (exit {proc.returncode}):\n{proc.stdout[-3000:]}"
    return path


@pytest.mark.containers
def test_real_run_report_in_chromium(browser: Any, tmp_path: Path) -> None:
    path = _real_results(tmp_path)
    doc = json.loads(path.read_text())
    from renderchaos.report.history import History

    html = render_html(doc, ReportInputs.gather(path.parent, History(path.parent / "history").load(
        exclude_run=doc.get("run_id"))))
    page_path = tmp_path / "report.html"
    page_path.write_text(html)
    o = open_page(browser, page_path)
    check_page(o, doc)
    page = o.page
    # the first timeline with a fault window, opened, then the page from the top to it
    target = page.locator("svg.timeline:has(rect.fault-window)").first
    target.evaluate("el => { const d = el.closest('details'); if (d) d.open = true; }")
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    top = page.evaluate("window.scrollY") + box["y"] + box["height"] + 20
    matrix_end = page.evaluate("document.querySelector('#coverage').getBoundingClientRect().bottom + window.scrollY")
    page.evaluate("window.scrollTo(0, 0)")
    height = min(max(top, matrix_end, 1000), 9000)
    page.screenshot(path=str(REPORTS / "report-screenshot.png"), full_page=True,
                    clip={"x": 0, "y": 0, "width": 1320, "height": height})
    assert not o.problems, "\n".join(o.problems)
