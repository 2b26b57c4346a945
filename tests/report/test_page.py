"""report.html from a results document: what leads, what is shown, what degrades (no browser)."""

from __future__ import annotations

import re
from pathlib import Path

from renderchaos.report.coverage import coverage, mentions
from renderchaos.report.doc import failure_parts, fault_windows
from renderchaos.report.page import ReportInputs, render_html
from renderchaos.report.synthetic import synthetic_doc
from renderchaos.report.timeline import render_timeline


def section(html: str, name: str) -> str:
    start = html.index(f"<section id={name}>")
    return html[start:html.index("</section>", start)]


def test_a_failing_run_leads_with_the_failure() -> None:
    doc = synthetic_doc(10, failures=1)
    html = render_html(doc)
    order = [html.index(s) for s in ("<header id=verdict", "<section id=failures>", "<section id=coverage>",
                                     "<section id=scenarios>")]
    assert order == sorted(order)
    failures = section(html, "failures")
    failed = doc["results"][0]
    assert failed["id"] in failures
    assert "§一.1 错误2 Invalid data found when processing input" in failures  # runbook section
    assert "ffmpeg errors" in failures  # its registered English title beside it
    assert "every accepted job terminal and accounted for" in failures  # expected
    assert "1 lost job: 7f3c" in failures  # observed
    assert "<svg class=timeline" in failures and "fault-window" in failures  # its timeline
    assert ">FAILED<" in html.split("</header>")[0]


def test_header_has_what_replays_the_run() -> None:
    doc = synthetic_doc(3, failures=0)
    header = render_html(doc).split("</header>")[0]
    for text in ("resilience", ">1<", "reference stack", "refstack", "0123abcd", "podman 4.3.1",
                 "localhost/renderchaos-app:abc123", doc["command"], doc["results"][0]["replay"]):
        assert text.replace("'", "&#x27;") in header, text


def test_coverage_matrix_shows_every_registered_section_and_its_gaps() -> None:
    doc = synthetic_doc(14, failures=0)
    books = {b.key: b for b in coverage(doc)}
    rows = {r.id: r for r in books["R"].rows}
    assert rows["§五.1"].gap  # no scenario: shown as a gap
    assert not rows["§一"].gap and rows["§一"].via_children  # covered through §一.1..3
    assert [e["id"] for e in rows["§二.1"].entries] == ["api.case03"]
    a_rows = {r.id: r for r in books["A"].rows}
    # "§二.1 认证错误 (A §1.1 401 Unauthorized)" also covers A §1.1; "§2.2 / §2.3" covers §2.3
    assert [e["id"] for e in a_rows["§1.1"].entries] == ["api.case03"]
    assert [e["id"] for e in a_rows["§2.3"].entries] == ["ai.case10"]
    assert books["P"].registered is False and books["P"].unmatched  # not registered: listed, not dropped
    html = section(render_html(doc), "coverage")
    assert "gap: no scenario" in html and "存储空间不足" in html and "storage full" in html
    assert html.count("<tr class=\"gap\">") == books["R"].gaps + books["A"].gaps


def test_section_references_follow_the_registry_rules() -> None:
    books = {b.key: b for b in coverage({"runbooks": [
        {"key": "R", "title": "r", "file": "r.txt", "sections": [
            {"id": "§二", "title": "API错误", "level": 1}, {"id": "§二.1", "title": "认证错误", "level": 2},
            {"id": "§八", "title": "常见问题", "level": 1},
            {"id": "§八 Redis内存持续增长", "title": "Redis内存持续增长", "level": 2}]},
        {"key": "A", "title": "a", "file": "a.txt", "sections": [
            {"id": "§1.1", "title": "401"}, {"id": "§1.2", "title": "404"}, {"id": "§2", "title": "任务"},
            {"id": "§2.2", "title": "失败"}, {"id": "§2.3", "title": "超时"}]},
        {"key": "V", "title": "v", "file": "v.txt", "sections": [
            {"id": "解决方案", "title": "解决方案", "level": 1}, {"id": "IP白名单配置", "title": "IP白名单配置", "level": 2},
            {"id": "监控机制加强", "title": "监控机制加强", "level": 2}]}], "results": []})}

    def ids(key: str, ref: str) -> list[str]:
        return [r.id for r in mentions(books, key, ref)]

    assert ids("A", "§2.2 任务失败 / §2.3 任务超时") == ["§2.2", "§2.3"]
    assert ids("R", "§二.1 认证错误 (A §1.1 401 Unauthorized)") == ["§二.1", "§1.1"]
    assert ids("A", "§1.2 404 Not Found (R §二)") == ["§1.2", "§二"]
    assert ids("A", "§2.10 nothing") == []  # §2 is not a prefix of §2.10
    assert ids("R", "§八 Redis内存持续增长") == ["§八 Redis内存持续增长"]
    assert ids("R", "§八 Q: 视频渲染一直卡在99%?") == ["§八"]
    assert ids("V", "解决方案: IP白名单配置 / 监控机制加强") == ["解决方案", "监控机制加强"]


def test_timeline_draws_phases_faults_limits_and_samples() -> None:
    e = synthetic_doc(1, failures=0)["results"][0]
    svg = render_timeline(e, e["id"])
    assert svg.count('class="fault-window"') == 1
    for lane in ("steady_state_before", "inject", "detect", "remedy", "steady_state_after", "time to detect",
                 "time to recover", "latency ms", "jobs", "queue depth"):
        assert f">{lane}<" in svg, lane
    assert "class=limit" in svg  # the detect limit is drawn
    e["samples"] = None
    assert "no samples" in render_timeline(e)


def test_a_fault_never_healed_is_shaded_to_the_end_and_audited() -> None:
    doc = synthetic_doc(2, failures=0)
    e = doc["results"][1]
    e["faults"][0].update(healed_at=None, heal_error="proxy API refused: 500")
    e["faults_active_at_end"] = 1
    html = render_html(doc)
    assert 'class="fault-window fault-open"' in html
    audit = section(html, "faults")
    assert "never healed" in audit and "proxy API refused: 500" in audit and "still active at the end" in audit
    assert "Faults still active at the end" in html.split("</header>")[0]


def test_an_old_minimal_document_still_renders() -> None:
    doc = {"generated_at": "2025-01-01T00:00:00Z", "profile": "gate", "seed": 3, "summary": {"passed": 1},
           "results": [{"nodeid": "suites/test_api.py::test_auth[api.auth]", "id": "api.auth", "outcome": "passed",
                        "runbook": "R §二.1 认证错误 (render-platform-troubleshooting.zh.txt)",
                        "time_to_detect_s": 0.4, "time_to_recover_s": None,
                        "phases": [{"name": "detect", "started": 0.1, "ended": 0.5, "ok": True, "note": "",
                                    "duration": 0.4}], "lost": 0, "orphan_ffmpeg": None}]}
    html = render_html(doc)
    assert "PASSED" in html
    assert "no samples" in html and "No fault audit in this results.json" in html
    assert "No runbooks are registered" in html and "§二.1 认证错误" in html
    assert "not measured" in html  # time to recover null
    assert "--chaos-seed 3" in html  # a replay command rebuilt from the nodeid
    assert render_html({"results": []})  # nothing ran: still a page


def test_an_old_document_gets_fault_windows_from_its_phase_journal() -> None:
    e = synthetic_doc(1, failures=0)["results"][0]
    del e["faults"]
    inject = next(p for p in e["phases"] if p["name"] == "inject")
    remedy = next(p for p in e["phases"] if p["name"] == "remedy")
    windows, derived = fault_windows(e)
    assert derived and windows == [{"description": inject["note"], "injected_at": inject["started"],
                                    "healed_at": remedy["ended"]}]
    svg = render_timeline(e)
    assert 'class="fault-window derived"' in svg and "faults (journal)" in svg


def test_the_page_is_self_contained() -> None:
    html = render_html(synthetic_doc(5, failures=1))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html


def test_failure_text_is_split_into_its_parts() -> None:
    e = {"failure": "renderchaos.errors.ScenarioFailed: [x] t\n  runbook: R §一\n  expected: a\n  observed: b\n"
                    "  more b\n---\ntb"}
    parts = failure_parts(e)  # type: ignore[arg-type]
    assert parts["expected"] == "a" and parts["observed"] == "b\n  more b" and parts["rest"] == "tb"


def test_mutation_and_load_files_are_shown(tmp_path: Path) -> None:
    (tmp_path / "mutation.json").write_text('{"run_id": "m1", "variants": 3, "measured": 3, "caught": 2, '
                                            '"score": 0.667, "unclaimed_variants": ["x"], "per_variant": {'
                                            '"api_slow_submit": {"caught_by": ["api.case03"], "missed_by": [], '
                                            '"not_run": [], "description": "slow"}, "worker_no_refund": '
                                            '{"caught_by": [], "missed_by": ["ai.case11: passed"], "not_run": [], '
                                            '"description": "no refund"}}}')
    (tmp_path / "load").mkdir()
    (tmp_path / "load" / "chaos.html").write_text("<html></html>")
    (tmp_path / "load" / "chaos_timeline.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 16)
    doc = synthetic_doc(5, failures=0)
    html = render_html(doc, ReportInputs.gather(tmp_path))
    mutation = section(html, "mutation")
    assert "67%" in mutation and "api_slow_submit" in mutation and "not caught" in mutation
    assert 'href="#s-api.case03"' in mutation
    load = section(html, "load")
    assert 'href="load/chaos.html"' in load and "data:image/png;base64," in load


def test_fifty_scenarios_render_every_timeline() -> None:
    # how fast is benchmarks/report.py's number; here only that every scenario gets its timeline
    html = render_html(synthetic_doc(50, failures=3))
    assert html.count("<svg class=timeline") == 53  # 50 scenarios + the 3 failures leading
