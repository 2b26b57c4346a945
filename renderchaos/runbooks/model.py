"""Runbooks as plain data: a :class:`RunbookDoc` is a file with :class:`Section` s.

Scenarios cite a runbook by key and a free-text *ref* that starts with a section id
(``"§一.3 渲染超时 原因4: 死锁"``). :meth:`RunbookDoc.section_for` finds the section whose id is
the longest prefix of the ref, so a ref can carry as much prose after the id as it likes.

Matching compares normalized text: Unicode NFKC (full-width ``：，？`` become ASCII), case-folded,
and every run of spaces, ``_``, ``-`` or ``:`` counts as one space, so a Markdown slug
``queue-backlog`` matches the ref ``"Queue backlog (worker frozen)"``. An id matches only up to
a boundary: ``§2`` is not a prefix of ``§2.1`` or ``§21``, and ``监控和告警`` is not a prefix of
``监控和告警系统``; a ``.`` followed by a space (``"问题分析 2. 管道通信问题"``) is a boundary.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from renderchaos.errors import ConfigError

KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_SEPARATORS = re.compile(r"[\s_:\-]+")


def normalize(text: str) -> str:
    """The form ids and refs are compared in (see the module docstring)."""
    return _SEPARATORS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def _is_boundary(rest: str) -> bool:
    """True when ``rest`` (what follows a matched id) does not continue the id."""
    if not rest:
        return True
    head = rest[0]
    if head.isalnum():
        return False
    if head == "." and len(rest) > 1 and rest[1].isalnum():
        return False  # "§2" must not match "§2.1"
    return True


@dataclass(frozen=True)
class Section:
    """One section of a runbook.

    ``id`` is what scenario refs start with (``"§一.1"``, ``"§2.1"``, ``"监控和告警 2"``);
    ``title`` is the heading as written in the runbook, ``title_en`` an English rendering;
    ``level`` 1 is a top-level part, 2 a subsection of the part above it, and so on.
    """

    id: str
    title: str
    title_en: str = ""
    level: int = 1

    def label(self) -> str:
        """``id`` and ``title``, without repeating a title the id already spells out."""
        title = normalize(self.title).rstrip("?!. ")
        return self.id if title and normalize(self.id).endswith(title) else f"{self.id} {self.title}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "title_en": self.title_en, "level": self.level}


@dataclass(frozen=True)
class RunbookDoc:
    """A registered runbook: ``key`` (what scenarios cite, e.g. ``"R"``), ``title``, the runbook
    ``file`` (a name, e.g. ``render-platform-troubleshooting.zh.txt``) and its sections in
    document order. ``source`` says where this index came from (a path, an entry point); it is
    for messages only and does not take part in equality.
    """

    key: str
    title: str
    file: str
    sections: tuple[Section, ...]
    language: str = ""
    title_en: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sections", tuple(self.sections))
        where = f" ({self.source})" if self.source else ""
        if not isinstance(self.key, str) or not KEY_RE.match(self.key):
            raise ConfigError(f"runbook key {self.key!r}{where} is not usable: expected a letter followed by "
                              "letters, digits, '_' or '-' (e.g. 'R' or 'ops-db'); fix the key")
        if not self.title or not self.file:
            raise ConfigError(f"runbook {self.key}{where} needs a title and a file (got title={self.title!r}, "
                              f"file={self.file!r}); fill them in")
        if not self.sections:
            raise ConfigError(f"runbook {self.key}{where} has no sections; list at least one")
        seen: set[str] = set()
        for s in self.sections:
            if not isinstance(s, Section):
                raise ConfigError(f"runbook {self.key}{where}: expected Section objects, got {s!r}")
            if not s.id.strip() or not s.title.strip():
                raise ConfigError(f"runbook {self.key}{where}: section {s!r} needs a non-empty id and title")
            if s.level < 1:
                raise ConfigError(f"runbook {self.key}{where}: section {s.id!r} has level {s.level}; "
                                  "levels start at 1")
            norm = normalize(s.id)
            if norm in seen:
                raise ConfigError(f"runbook {self.key}{where}: section id {s.id!r} appears twice; "
                                  "every section needs its own id")
            seen.add(norm)

    def section(self, id: str) -> Section | None:
        """The section with exactly this id (compared normalized), or None."""
        norm = normalize(id)
        return next((s for s in self.sections if normalize(s.id) == norm), None)

    def section_for(self, ref: str) -> Section | None:
        """The section whose id is the longest prefix of ``ref`` (ending at a boundary), or None."""
        norm = normalize(ref)
        best: Section | None = None
        best_len = -1
        for s in self.sections:
            sid = normalize(s.id)
            if len(sid) > best_len and norm.startswith(sid) and _is_boundary(norm[len(sid):]):
                best, best_len = s, len(sid)
        return best

    def to_dict(self) -> dict[str, Any]:
        """For results.json: key, title, file, language and every section in document order."""
        return {"key": self.key, "title": self.title, "title_en": self.title_en, "file": self.file,
                "language": self.language, "sections": [s.to_dict() for s in self.sections]}

    def __str__(self) -> str:
        return f"{self.key} ({self.file})"
