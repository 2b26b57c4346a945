"""The four bundled indexes: every scenario ref resolves, and the indexes match the runbook texts.

The texts are the spec and live outside the repository (``../shared/runbooks/``); the tests that
read them look there, or in ``$RENDERCHAOS_RUNBOOK_TEXTS``, and are skipped (saying so) when the
texts are not on this machine.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import pytest

from renderchaos.runbooks import RunbookDoc, bundled_runbooks, default_registry

ROOT = Path(__file__).resolve().parents[2]
SCENARIO_SOURCES = sorted((ROOT / "scenarios").glob("*.py"))
RUNBOOK_CALL = re.compile(r'Runbook\(\s*"(?P<key>[^"]+)"\s*,\s*"(?P<ref>[^"]+)"\s*\)')


def scenario_refs() -> list[tuple[str, str, str]]:
    """(file:line, key, ref) of every Runbook("K", "ref") in scenarios/*.py."""
    out = []
    for path in SCENARIO_SOURCES:
        text = path.read_text(encoding="utf-8")
        calls = text.count("Runbook(")
        found = list(RUNBOOK_CALL.finditer(text))
        assert len(found) == calls, (f"{path.name}: {calls} Runbook( calls but only {len(found)} in the form "
                                     'Runbook("K", "ref"); extend RUNBOOK_CALL so none is skipped')
        out += [(f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}", m["key"], m["ref"]) for m in found]
    return out


def test_the_four_bundled_runbooks() -> None:
    docs = {d.key: d for d in default_registry().all()}
    assert {k: docs[k].file for k in "RAPV"} == {
        "R": "render-platform-troubleshooting.zh.txt", "A": "ai-service-troubleshooting.zh.txt",
        "P": "peertube-ffmpeg-pileup.zh.txt", "V": "avideo-encoder-blacklist.zh.txt"}
    for doc in docs.values():
        assert doc.title_en and doc.language == "zh"
        levels = [s.level for s in doc.sections]
        assert levels[0] == 1 and all(b <= a + 1 for a, b in zip(levels, levels[1:])), \
            f"{doc.key}: a section is more than one level below the one before it: {levels}"
        missing = [s.id for s in doc.sections if not s.title_en]
        assert not missing, f"{doc.key}: sections without an English title: {missing}"


def test_default_registry_is_one_per_process_and_bundled_is_fresh() -> None:
    assert default_registry() is default_registry()
    assert bundled_runbooks() == tuple(default_registry().get(k) for k in "RAPV")
    assert bundled_runbooks()[0] is not bundled_runbooks()[0]


def test_scenario_sources_cite_runbooks() -> None:
    refs = scenario_refs()
    assert len(refs) >= 40, f"expected the whole catalog's runbook refs, found {len(refs)}"
    assert {key for _, key, _ in refs} == set("RAPV")


@pytest.mark.parametrize("where, key, ref", scenario_refs())
def test_every_scenario_ref_resolves(where: str, key: str, ref: str) -> None:
    doc, section = default_registry().resolve(key, ref)
    assert doc.key == key and ref.startswith(section.id.split(" ")[0])


def test_every_catalog_scenario_resolves() -> None:
    from scenarios import catalog

    scenarios = catalog()
    assert len(scenarios) >= 40
    for scenario in scenarios.values():
        runbook = scenario.runbook
        default_registry().resolve(runbook.key, runbook.section)


@pytest.mark.parametrize("key, ref, expected", [
    ("R", "§一.3 渲染超时 原因4: 死锁 (进程挂起,无CPU占用)", "§一.3"),
    ("R", "§一.1 错误3 Encoder not found", "§一.1"),
    ("R", "§六.3 限流 (limit_req zone=api rate=10r/s burst=20)", "§六.3"),
    ("R", "§八 Redis内存持续增长", "§八 Redis内存持续增长"),
    ("R", "§八 批量任务显示完成,但部分视频缺失 -> 存储空间是否已满", "§八 批量任务显示完成,但部分视频缺失"),
    ("R", "§八 Q: 视频渲染一直卡在99%?", "§八"),  # "Q:" is not part of the question's id
    ("R", "§三 性能问题 + §四 依赖故障 (负载下的故障注入)", "§三"),
    ("A", "§2.1 任务一直处于 pending 状态 (检查 RabbitMQ 状态)", "§2.1"),
    ("A", "§1.2 404 Not Found (R §二)", "§1.2"),
    ("A", "监控和告警 2 (AI 任务失败率过高)", "监控和告警 2"),
    ("P", "问题分析 2. 管道通信问题 (客户端断开连接后未正确清理)", "问题分析 2"),
    ("V", "解决方案: IP白名单配置 / 监控机制加强 / 应急预案: 本地录制备份", "解决方案"),
    ("V", "监控机制加强 / 应急预案: 管理员手动干预 (强制重新录制)", "监控机制加强"),
])
def test_scenario_refs_resolve_to_the_section_they_name(key: str, ref: str, expected: str) -> None:
    assert default_registry().resolve(key, ref)[1].id == expected


# --- against the runbook texts --------------------------------------------------------------
def _texts_dir() -> Path | None:
    candidates = [os.environ.get("RENDERCHAOS_RUNBOOK_TEXTS", "")]
    candidates += [str(p / "shared" / "runbooks") for p in ROOT.parents[:2]]
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


TEXTS = _texts_dir()
needs_texts = pytest.mark.skipif(TEXTS is None, reason="runbook texts not found (../shared/runbooks or "
                                                       "$RENDERCHAOS_RUNBOOK_TEXTS)")


def _norm(text: str) -> str:
    return re.sub(r"[ \t]+", " ", unicodedata.normalize("NFKC", text))


def _written_form(section_id: str, title: str) -> str:
    """How the runbook text writes the heading behind an id."""
    if m := re.fullmatch(r"§([一二三四五六七八九十]+)", section_id):
        return f"{m[1]}、{title}"
    if m := re.fullmatch(r"§[一二三四五六七八九十]+\.(\d+)", section_id):
        return f"{m[1]}. {title}"
    if m := re.fullmatch(r"§(\d+)", section_id):
        return f"{m[1]}. {title}"
    if re.fullmatch(r"§\d+\.\d+", section_id):
        return f"{section_id[1:]} {title}"
    if m := re.fullmatch(r".+ (\d+)", section_id):
        return f"{m[1]}. {title}"
    return title


@needs_texts
@pytest.mark.parametrize("doc", bundled_runbooks(), ids=lambda d: d.key)
def test_index_lists_headings_as_written_in_document_order(doc: RunbookDoc) -> None:
    assert TEXTS is not None
    text = _norm((TEXTS / doc.file).read_text(encoding="utf-8"))
    assert _norm(doc.title) in text
    pos = 0
    for section in doc.sections:
        form = _norm(_written_form(section.id, section.title))
        found = text.find(form, pos)
        assert found >= 0, f"{doc.key} {section.id}: {form!r} not found in {doc.file} after offset {pos}"
        pos = found + len(form)


@needs_texts
def test_no_heading_of_the_texts_is_missing() -> None:
    assert TEXTS is not None
    docs = {d.key: d for d in bundled_runbooks()}
    titles = {k: {s.title for s in d.sections} for k, d in docs.items()}
    lines = {k: _norm((TEXTS / d.file).read_text(encoding="utf-8")).splitlines() for k, d in docs.items()}
    missing = []
    # R: every part "一、..." ; A: every "N. ..." and "N.M ..." heading ; P: every numbered item
    missing += [("R", ln) for ln in lines["R"] if (m := re.fullmatch(r"[一二三四五六七八九十]+、(.+)", ln))
                and m[1] not in titles["R"]]
    missing += [("A", ln) for ln in lines["A"] if (m := re.fullmatch(r"(?:\d+\.|\d+\.\d+) (.+)", ln))
                and m[1] not in titles["A"]]
    missing += [("P", ln) for ln in lines["P"] if (m := re.fullmatch(r"\s+\d+\. ([^:]+):.*", ln))
                and m[1] not in titles["P"]]
    assert not missing, f"headings of the runbook texts missing from the indexes: {missing}"
