"""RunbookRegistry: register, conflicts, resolve and its messages, mentions."""

from __future__ import annotations

import pickle

import pytest

from renderchaos.errors import ConfigError
from renderchaos.runbooks import RunbookDoc, RunbookRegistry, Section, bundled_runbooks


def make(key: str = "OPS", file: str = "ops.zh.txt", source: str = "ops.toml", extra: tuple = ()) -> RunbookDoc:
    return RunbookDoc(key=key, title="运维手册", file=file, source=source,
                      sections=(Section("§1", "Queues"), Section("§1.1", "Pending", level=2),
                                Section("§1.2", "Stuck", level=2)) + extra)


def test_register_get_all_in_order() -> None:
    reg = RunbookRegistry()
    a, b = make("OPS"), make("DB", "db.txt")
    assert reg.register(a) is a and reg.register(b) is b
    assert reg.get("DB") is b and reg.all() == (a, b) and reg.keys() == ("OPS", "DB")
    assert "OPS" in reg and "X" not in reg and len(reg) == 2 and list(reg) == [a, b]


def test_registering_the_same_runbook_again_is_a_no_op() -> None:
    reg = RunbookRegistry([make(source="conftest.py")])
    again = make(source="other/conftest.py")  # same content, another source
    assert reg.register(again).source == "conftest.py"
    assert len(reg) == 1


def test_a_second_runbook_under_the_same_key_names_both_files() -> None:
    reg = RunbookRegistry([make(file="ops.zh.txt", source="team-a/ops.toml")])
    other = make(file="ops-v2.zh.txt", source="team-b/ops.toml")
    with pytest.raises(ConfigError) as info:
        reg.register(other)
    msg = str(info.value)
    assert "runbook key 'OPS' is registered twice with different content" in msg
    assert "ops.zh.txt (from team-a/ops.toml)" in msg and "ops-v2.zh.txt (from team-b/ops.toml)" in msg
    assert "Give one of them another key" in msg
    assert info.value.files == ("ops.zh.txt", "ops-v2.zh.txt")
    assert reg.get("OPS").file == "ops.zh.txt"  # the first stays
    # same file, different sections: still a conflict
    with pytest.raises(ConfigError, match="registered twice"):
        reg.register(make(source="team-c/ops.toml", extra=(Section("§2", "More"),)))


def test_register_takes_only_docs() -> None:
    with pytest.raises(ConfigError, match="register\\(\\) takes a RunbookDoc, got str.*register_runbook\\(path\\)"):
        RunbookRegistry().register("ops.toml")  # type: ignore[arg-type]


def test_resolve_longest_prefix() -> None:
    reg = RunbookRegistry([make()])
    doc, section = reg.resolve("OPS", "§1.2 Stuck (SIGSTOP one worker)")
    assert doc.key == "OPS" and section.id == "§1.2"


def test_unknown_key_lists_the_keys_and_says_what_to_do() -> None:
    reg = RunbookRegistry(bundled_runbooks())
    with pytest.raises(ConfigError) as info:
        reg.resolve("X", "§1 whatever")
    msg = str(info.value)
    assert "unknown runbook key 'X'" in msg
    assert ("registered: R (render-platform-troubleshooting.zh.txt), A (ai-service-troubleshooting.zh.txt), "
            "P (peertube-ffmpeg-pileup.zh.txt), V (avideo-encoder-blacklist.zh.txt)") in msg
    assert "register_runbook(path, key=...) from a conftest.py" in msg and "'renderchaos.runbooks'" in msg
    assert "no runbook is registered" in str(pytest.raises(ConfigError, RunbookRegistry().get, "R").value)


def test_unknown_section_lists_the_sections_and_says_what_to_do() -> None:
    reg = RunbookRegistry([make()])
    with pytest.raises(ConfigError) as info:
        reg.resolve("OPS", "§1.3 Lost jobs")
    msg = str(info.value)
    assert "runbook OPS (ops.zh.txt) has no section that '§1.3 Lost jobs' starts with" in msg
    assert "§1 Queues; §1.1 Pending; §1.2 Stuck" in msg
    assert "add the section to the runbook's index (ops.toml)" in msg
    assert (info.value.key, info.value.ref) == ("OPS", "§1.3 Lost jobs")
    restored = pickle.loads(pickle.dumps(info.value))  # xdist moves errors between processes
    assert str(restored) == msg and restored.ref == "§1.3 Lost jobs"


def test_mentions_follow_slashes_pluses_and_cross_references() -> None:
    reg = RunbookRegistry(bundled_runbooks())
    ids = lambda key, ref: [(d.key, s.id) for d, s in reg.mentions(key, ref)]  # noqa: E731
    assert ids("A", "§2.2 任务失败 / §2.3 任务超时") == [("A", "§2.2"), ("A", "§2.3")]
    assert ids("R", "§三 性能问题 + §四 依赖故障 (负载下的故障注入)") == [("R", "§三"), ("R", "§四")]
    assert ids("R", "§二.1 认证错误 (A §1.1 401 Unauthorized)") == [("R", "§二.1"), ("A", "§1.1")]
    assert ids("A", "§1.2 404 Not Found (R §二)") == [("A", "§1.2"), ("R", "§二")]
    assert ids("A", "监控和告警 2 (AI 任务失败率过高)") == [("A", "监控和告警 2")]  # "AI" is no key
    assert ids("V", "解决方案: IP白名单配置 / 监控机制加强 / 应急预案: 本地录制备份") == [
        ("V", "解决方案"), ("V", "监控机制加强"), ("V", "应急预案")]
    assert ids("R", "§二.3 参数错误 / §十 nothing") == [("R", "§二.3")]  # unknown parts left out
    with pytest.raises(ConfigError, match="has no section"):
        reg.mentions("R", "§十 nothing / §二.3 参数错误")  # the first part must resolve
