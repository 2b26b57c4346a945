"""load_runbook: TOML indexes and Markdown runbooks, and what a bad file says."""

from __future__ import annotations

from pathlib import Path

import pytest

from renderchaos.errors import ConfigError
from renderchaos.runbooks import Section, load_runbook, parse_markdown, slugify

INDEX = '''
key = "OPS"
title = "运维手册"
title_en = "Ops handbook"
file = "ops.zh.txt"
language = "zh"

[[sections]]
id = "§一"
title = "渲染失败问题"
title_en = "Render failures"

[[sections]]
id = "§一.1"
title = "FFmpeg渲染错误"
title_en = "FFmpeg render errors"
level = 2
'''


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_index(tmp_path: Path) -> None:
    path = write(tmp_path, "ops.toml", INDEX)
    doc = load_runbook(path)
    assert (doc.key, doc.title, doc.title_en, doc.file, doc.language) == (
        "OPS", "运维手册", "Ops handbook", "ops.zh.txt", "zh")
    assert doc.sections == (Section("§一", "渲染失败问题", "Render failures", 1),
                            Section("§一.1", "FFmpeg渲染错误", "FFmpeg render errors", 2))
    assert doc.source == str(path)
    assert doc.section_for("§一.1 错误3 Encoder not found") == doc.sections[1]


def test_toml_index_key_from_the_caller(tmp_path: Path) -> None:
    path = write(tmp_path, "ops.toml", INDEX.replace('key = "OPS"', ""))
    assert load_runbook(path, key="OPS2").key == "OPS2"
    with pytest.raises(ConfigError, match="no key; give one in the file"):
        load_runbook(path)
    with pytest.raises(ConfigError, match="the file says key 'OPS' but it was registered as 'X'"):
        load_runbook(write(tmp_path, "ops2.toml", INDEX), key="X")


@pytest.mark.parametrize("change, message", [
    (("[[sections]]", "[[sections"), "not valid TOML"),
    (('language = "zh"', 'langauge = "zh"'), r"unknown field\(s\) \['langauge'\]"),
    (('level = 2', 'levle = 2'), r"section #2: unknown field\(s\) \['levle'\]"),
    (('level = 2', 'level = "2"'), "level = '2'; expected an integer"),
    (('title = "运维手册"', ""), "title is missing"),
    (('id = "§一.1"', 'id = "§一"'), "section id '§一' appears twice"),
    (('id = "§一.1"', 'id = 11'), "id = 11; expected a string"),
])
def test_bad_toml_index_says_what_is_wrong(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = write(tmp_path, "bad.toml", INDEX.replace(*change, 1))
    with pytest.raises(ConfigError, match=message) as info:
        load_runbook(path)
    assert str(path) in str(info.value)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown format '.txt'.*write a TOML index"):
        load_runbook(write(tmp_path, "r.zh.txt", "一、渲染失败问题"))
    with pytest.raises(ConfigError, match="cannot read it"):
        load_runbook(tmp_path / "missing.toml")


MARKDOWN = '''---
key: OPS
title_en: Ops runbook
language: en
---
# Ops runbook

Intro text.

## 1. Queues

### 1.1 Pending jobs

```sh
# restart the worker   <- a shell comment, not a heading
docker restart worker
```

### 2. Stuck workers

## 2 Databases

## §3 Storage ##

### Disk full

## Monitoring and alerts

### 1. Alert rules

### Dashboards

## 404 errors

## Dashboards
'''


def test_markdown_runbook(tmp_path: Path) -> None:
    doc = load_runbook(write(tmp_path, "ops.md", MARKDOWN))
    assert (doc.key, doc.title, doc.title_en, doc.language, doc.file) == (
        "OPS", "Ops runbook", "Ops runbook", "en", "ops.md")
    assert [(s.id, s.title, s.level) for s in doc.sections] == [
        ("§1", "Queues", 1),
        ("§1.1", "Pending jobs", 2),          # an explicit dotted number
        ("§1.2", "Stuck workers", 2),         # a plain number composed with its parent's
        ("2-databases", "2 Databases", 1),    # a plain number without punctuation is a title
        ("§3", "Storage", 1),                 # closing #'s dropped
        ("disk-full", "Disk full", 2),
        ("monitoring-and-alerts", "Monitoring and alerts", 1),
        ("monitoring-and-alerts 1", "Alert rules", 2),   # numbered under an unnumbered heading
        ("dashboards", "Dashboards", 2),
        ("404-errors", "404 errors", 1),
        ("dashboards-2", "Dashboards", 1),    # repeated slugs are numbered
    ]
    assert doc.section_for("§1.2 stuck workers (SIGSTOP)").id == "§1.2"
    assert doc.section_for("Monitoring and alerts 1: alert rules").id == "monitoring-and-alerts 1"


def test_markdown_title_line_and_caller_key() -> None:
    doc = parse_markdown("# 运维手册\n\n# 一、渲染失败问题\n\n## 1. FFmpeg渲染错误\n\n#### too deep\n",
                         key="Z", file="ops.md")
    assert doc.title == "运维手册" and doc.key == "Z"
    assert [(s.id, s.title, s.level) for s in doc.sections] == [("§一", "渲染失败问题", 1),
                                                                ("§一.1", "FFmpeg渲染错误", 2)]


@pytest.mark.parametrize("text, message", [
    ("# T\n## A\n", "no key"),
    ("---\nkey: Q\n# T\n## A\n", "front matter opened with '---' on line 1 is never closed"),
    ("intro\n## A\n", "no title"),
    ("# T\n\n```\n## not a heading\n```\n", "no sections"),
])
def test_bad_markdown_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_markdown(text, source="x.md")


def test_slugify() -> None:
    assert slugify("Queue backlog (worker frozen)!") == "queue-backlog-worker-frozen"
    assert slugify("监控和告警 / 设置") == "监控和告警-设置"
