"""Read a runbook from a file: a TOML index, or a Markdown runbook whose headings are the sections.

A TOML index names the runbook file and lists its sections (titles only, never the text)::

    key = "R"
    title = "故障排查手册"
    title_en = "Render platform troubleshooting handbook"
    file = "render-platform-troubleshooting.zh.txt"
    language = "zh"
    [[sections]]
    id = "§一.1"
    title = "FFmpeg渲染错误"
    title_en = "FFmpeg render errors"
    level = 2            # optional, 1 (a top-level part) by default

A Markdown runbook is its own index. Its key and title come from a front matter block
(``---`` lines around ``key: OPS``, ``title: ...``, ``title_en: ...``, ``language: ...``) or, for
the title, from a first ``# Title`` line; a key the file does not give comes from the caller.
Every other ``#``, ``##`` or ``###`` heading outside fenced code blocks is a section, its level
counted from the shallowest of them. A heading's id is its leading number, written as a ``§`` id
(``## 2.1 Pending jobs`` and ``## §2.1 Pending jobs`` both give ``§2.1``, a plain number needs its
punctuation: ``## 2. Queues`` or ``## 二、队列``, while ``## 404 errors`` is an unnumbered heading; ``### 1. Pending`` under
``## 2. Queues`` gives ``§2.1``; under an unnumbered heading ``queues`` it gives ``queues 1``);
an unnumbered heading's id is a slug of it (``## Queue backlog`` gives ``queue-backlog``, repeats
get ``-2``, ``-3``...).
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from pathlib import Path
from typing import Any

from renderchaos.errors import ConfigError
from renderchaos.runbooks.model import RunbookDoc, Section

TOML_SUFFIXES = (".toml",)
MARKDOWN_SUFFIXES = (".md", ".markdown")

_TOP_KEYS = {"key", "title", "title_en", "file", "language", "sections"}
_SECTION_KEYS = {"id", "title", "title_en", "level"}
_FRONT_KEYS = {"key", "title", "title_en", "language", "file"}


def load_runbook(path: str | Path, key: str | None = None, *, source: str | None = None) -> RunbookDoc:
    """Read a runbook: a ``.toml`` index or a ``.md`` runbook (see the module docstring).

    ``key`` is required for a Markdown file without a ``key:`` in its front matter; when both
    the file and the caller give a key they must agree. ``source`` (default: the path) is
    what messages name as the origin of this runbook.
    """
    path = Path(path)
    source = source or str(path)
    suffix = path.suffix.lower()
    if suffix not in TOML_SUFFIXES + MARKDOWN_SUFFIXES:
        raise ConfigError(f"runbook {path}: unknown format {suffix or '(no suffix)'!r}; expected a TOML index "
                          f"({', '.join(TOML_SUFFIXES)}) or a Markdown runbook ({', '.join(MARKDOWN_SUFFIXES)}). "
                          "For a plain-text runbook, write a TOML index that names it in `file`")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"runbook {path}: cannot read it ({exc}); expected a UTF-8 file; check the path",
                          path=str(path)) from exc
    if suffix in TOML_SUFFIXES:
        return parse_toml(text, source=source, key=key)
    return parse_markdown(text, source=source, key=key, file=path.name)


# --- TOML -------------------------------------------------------------------------------
def _str_field(raw: dict[str, Any], name: str, where: str, required: bool = True) -> str:
    value = raw.get(name, "")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {name} = {value!r}; expected a string")
    if required and not value.strip():
        raise ConfigError(f"{where}: {name} is missing; add {name} = \"...\"")
    return value


def _check_key(own: str, given: str | None, source: str) -> str:
    if given is not None and own and own != given:
        raise ConfigError(f"runbook {source}: the file says key {own!r} but it was registered as {given!r}; "
                          "drop one of them or make them agree")
    key = own or given or ""
    if not key:
        raise ConfigError(f"runbook {source}: no key; give one in the file (key = \"OPS\" / front matter "
                          "`key: OPS`) or pass key= when loading or registering it")
    return key


def parse_toml(text: str, *, source: str = "<toml>", key: str | None = None) -> RunbookDoc:
    """A :class:`RunbookDoc` from the text of a TOML index."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"runbook index {source}: not valid TOML ({exc}); fix the syntax", path=source) from exc
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"runbook index {source}: unknown field(s) {unknown}; expected only {sorted(_TOP_KEYS)}")
    sections_raw = raw.get("sections", [])
    if not isinstance(sections_raw, list) or not all(isinstance(s, dict) for s in sections_raw):
        raise ConfigError(f"runbook index {source}: `sections` must be an array of tables ([[sections]] blocks)")
    sections = []
    for i, s in enumerate(sections_raw, 1):
        where = f"runbook index {source}, section #{i}"
        unknown = sorted(set(s) - _SECTION_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; expected only {sorted(_SECTION_KEYS)}")
        level = s.get("level", 1)
        if not isinstance(level, int) or isinstance(level, bool):
            raise ConfigError(f"{where}: level = {level!r}; expected an integer >= 1")
        sections.append(Section(id=_str_field(s, "id", where), title=_str_field(s, "title", where),
                                title_en=_str_field(s, "title_en", where, required=False), level=level))
    where = f"runbook index {source}"
    return RunbookDoc(key=_check_key(_str_field(raw, "key", where, required=False), key, source),
                      title=_str_field(raw, "title", where), file=_str_field(raw, "file", where),
                      sections=tuple(sections), language=_str_field(raw, "language", where, required=False),
                      title_en=_str_field(raw, "title_en", where, required=False), source=source)


# --- Markdown ---------------------------------------------------------------------------
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
_NUM = r"(?:\d+|[一二三四五六七八九十百]+)"
# "§2", "§2.1", "2.1", or a plain "2." / "二、" (a plain number needs its punctuation: "404 errors" is a title)
_NUMBER = re.compile(rf"^(?:§[ \t]*(?P<a>{_NUM}(?:\.\d+)*)|(?P<b>{_NUM}(?:\.\d+)+)|(?P<c>{_NUM})(?=[.、:：)]))"
                     r"(?:[.、:：)][ \t]*|[ \t]+|$)(?P<rest>.*)$")
_MAX_SECTION_DEPTH = 3  # `#`, `##`, `###`


def slugify(text: str) -> str:
    """A heading as an id: lower case, words joined by ``-``, other punctuation dropped; CJK kept."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[\s_-]+", "-", text).strip("-")


def _front_matter(lines: list[str], source: str) -> tuple[dict[str, str], int]:
    if not lines or lines[0].strip() != "---":
        return {}, 0
    meta: dict[str, str] = {}
    for i, line in enumerate(lines[1:], 1):
        if line.strip() == "---":
            return meta, i + 1
        name, sep, value = line.partition(":")
        if sep and name.strip() in _FRONT_KEYS:
            meta[name.strip()] = value.strip().strip("\"'")
    raise ConfigError(f"runbook {source}: front matter opened with '---' on line 1 is never closed; "
                      "add a closing '---' line")


def parse_markdown(text: str, *, source: str = "<markdown>", key: str | None = None,
                   file: str | None = None) -> RunbookDoc:
    """A :class:`RunbookDoc` from Markdown text (see the module docstring)."""
    lines = text.splitlines()
    meta, start = _front_matter(lines, source)
    headings: list[tuple[int, str]] = []  # (depth, text), code fences skipped
    fence: str | None = None
    for line in lines[start:]:
        m = _FENCE.match(line)
        if m:
            marker = m.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            continue
        if fence is None:
            h = _HEADING.match(line)
            if h:
                headings.append((len(h.group(1)), h.group(2)))
    title = meta.get("title", "")
    first = next((line for line in lines[start:] if line.strip()), "")
    if not title and headings and first.lstrip().startswith("# ") and headings[0][0] == 1:
        title = headings.pop(0)[1]
    if not title:
        raise ConfigError(f"runbook {source}: no title; start the file with a '# Title' line or give "
                          "`title:` in a front matter block")
    headings = [(d, t) for d, t in headings if d <= _MAX_SECTION_DEPTH]
    if not headings:
        raise ConfigError(f"runbook {source}: no sections; expected '#', '##' or '###' headings "
                          "outside code blocks")
    top = min(d for d, _ in headings)
    sections: list[Section] = []
    used: set[str] = set()
    stack: list[tuple[int, str, bool]] = []  # (level, id, numbered) of the open ancestors
    for depth, heading in headings:
        level = depth - top + 1
        while stack and stack[-1][0] >= level:
            stack.pop()
        parent = stack[-1] if stack else None
        m = _NUMBER.match(heading)
        if m:
            number, rest = m.group("a") or m.group("b") or m.group("c"), m.group("rest").strip()
            title_s = rest or heading
            if "." in number or parent is None:
                sid = f"§{number}"
            elif parent[2]:
                sid = f"{parent[1]}.{number}"
            else:
                sid = f"{parent[1]} {number}"
        else:
            title_s, sid = heading, slugify(heading) or f"section-{len(sections) + 1}"
        base, n = sid, 2
        while sid in used:
            sid, n = f"{base}-{n}", n + 1
        used.add(sid)
        sections.append(Section(id=sid, title=title_s, level=level))
        stack.append((level, sid, m is not None))
    return RunbookDoc(key=_check_key(meta.get("key", ""), key, source), title=title,
                      file=meta.get("file") or file or source, sections=tuple(sections),
                      language=meta.get("language", ""), title_en=meta.get("title_en", ""), source=source)
