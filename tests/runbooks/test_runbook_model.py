"""Section / RunbookDoc: longest-prefix resolution, validation, results.json form, pickling."""

from __future__ import annotations

import pickle

import pytest

from renderchaos.errors import ConfigError
from renderchaos.runbooks import RunbookDoc, Section, normalize


def doc(*sections: Section, key: str = "T") -> RunbookDoc:
    return RunbookDoc(key=key, title="Test runbook", file="test.zh.txt", sections=sections, language="zh")


NUMBERED = doc(
    Section("§一", "渲染失败问题", "Render failures"),
    Section("§一.1", "FFmpeg渲染错误", "FFmpeg render errors", 2),
    Section("§一.3", "渲染超时", "Render timeouts", 2),
    Section("§2", "Celery 任务问题", level=1),
    Section("§2.1", "任务一直处于 pending 状态", level=2),
    Section("§2.10", "Tenth", level=2),
    Section("监控和告警", "监控和告警"),
    Section("监控和告警 2", "设置告警规则", level=2),
    Section("问题分析", "问题分析"),
    Section("问题分析 2", "管道通信问题", level=2),
    Section("§八", "常见问题FAQ"),
    Section("§八 Redis内存持续增长", "Redis内存持续增长?", level=2),
    Section("queue-backlog", "Queue backlog"),
)


@pytest.mark.parametrize("ref, expected", [
    ("§一.3 渲染超时 原因4: 死锁", "§一.3"),             # the longest prefix, not §一
    ("§一.3", "§一.3"),                                   # the id alone
    ("§一 渲染失败问题", "§一"),
    ("§2.1 任务一直处于 pending 状态", "§2.1"),
    ("§2.10 tenth", "§2.10"),                             # not §2.1 + "0"
    ("监控和告警 2 (AI 任务失败率过高)", "监控和告警 2"),
    ("监控和告警 (all alerts)", "监控和告警"),
    ("问题分析 2. 管道通信问题 (客户端断开连接后未正确清理)", "问题分析 2"),  # ". " is a boundary
    ("§八 Redis内存持续增长", "§八 Redis内存持续增长"),
    ("§八 Redis内存持续增长?", "§八 Redis内存持续增长"),
    ("§八 GPU渲染比CPU还慢", "§八"),
    ("§八：Redis内存持续增长", "§八 Redis内存持续增长"),   # full-width colon counts as a separator
    ("Queue backlog (worker frozen)", "queue-backlog"),   # slug vs prose: case and '-' vs ' '
])
def test_section_for_is_the_longest_id_prefix(ref: str, expected: str) -> None:
    section = NUMBERED.section_for(ref)
    assert section is not None and section.id == expected


@pytest.mark.parametrize("ref", [
    "§二.1 认证错误",         # no such part
    "§21 twenty-one",         # "§2" must not match "§21"
    "§2x",                    # nor "§2x"
    "监控和告警系统",           # nor a longer CJK word
    "问题分析2",               # nor a number glued on
    "",
])
def test_section_for_respects_boundaries(ref: str) -> None:
    found = NUMBERED.section_for(ref)
    assert found is None, f"{ref!r} resolved to {found}"


def test_an_unregistered_subsection_does_not_fall_back_to_its_part() -> None:
    # "§一.2" names a subsection the index lacks; resolving it to "§一" would hide a typo in the
    # number, so it resolves to nothing and registry.resolve() lists the sections instead
    assert NUMBERED.section_for("§一.2 内存不足") is None
    assert NUMBERED.section_for("§2.3 任务超时") is None


def test_section_exact_lookup_is_normalized() -> None:
    assert NUMBERED.section("queue backlog") == Section("queue-backlog", "Queue backlog")
    assert NUMBERED.section("§一.2") is None


def test_to_dict_is_the_results_json_form() -> None:
    small = doc(Section("§1", "One", "One (en)"), Section("§1.1", "Sub", "", 2))
    assert small.to_dict() == {
        "key": "T", "title": "Test runbook", "title_en": "", "file": "test.zh.txt", "language": "zh",
        "sections": [{"id": "§1", "title": "One", "title_en": "One (en)", "level": 1},
                     {"id": "§1.1", "title": "Sub", "title_en": "", "level": 2}]}


def test_docs_are_frozen_picklable_and_source_is_not_content() -> None:
    a = RunbookDoc("T", "t", "f.txt", [Section("§1", "One")], source="here.toml")
    b = RunbookDoc("T", "t", "f.txt", (Section("§1", "One"),), source="there.toml")
    assert a == b and isinstance(a.sections, tuple)
    assert pickle.loads(pickle.dumps(a)) == a
    assert pickle.loads(pickle.dumps(a)).source == "here.toml"
    with pytest.raises(AttributeError):
        a.key = "U"  # type: ignore[misc]


@pytest.mark.parametrize("kwargs, message", [
    ({"key": "1R"}, "runbook key '1R' (x.toml) is not usable"),
    ({"key": "R S"}, "is not usable"),
    ({"title": ""}, "needs a title and a file"),
    ({"sections": ()}, "has no sections"),
    ({"sections": (Section("§1", "a"), Section("§1", "b"))}, "section id '§1' appears twice"),
    ({"sections": (Section("Queue backlog", "a"), Section("queue-backlog", "b"))}, "appears twice"),
    ({"sections": (Section("§1", ""),)}, "needs a non-empty id and title"),
    ({"sections": (Section("§1", "a", level=0),)}, "levels start at 1"),
])
def test_invalid_docs_are_config_errors(kwargs: dict, message: str) -> None:
    args = {"key": "R", "title": "t", "file": "f.txt", "sections": (Section("§1", "One"),), "source": "x.toml"}
    with pytest.raises(ConfigError) as info:
        RunbookDoc(**{**args, **kwargs})
    assert message in str(info.value)


def test_normalize() -> None:
    assert normalize("  §八：Redis_内存 -- Q ") == "§八 redis 内存 q"
    assert normalize("ＡＢ，") == "ab,"


def test_label_does_not_repeat_a_title_the_id_spells_out() -> None:
    assert Section("§八 Redis内存持续增长", "Redis内存持续增长?").label() == "§八 Redis内存持续增长"
    assert Section("§一.1", "FFmpeg渲染错误").label() == "§一.1 FFmpeg渲染错误"
