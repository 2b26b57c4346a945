"""The runbook coverage matrix: every section of every registered runbook, with the scenarios
that prove it and their outcomes. A section no scenario covers is a gap, shown, not hidden.

Read from the results document alone (``runbooks`` and each entry's ``runbook_key`` and
``runbook_section``), with the matching rules of the runbook registry (renderchaos.runbooks):
a scenario's section text cites the section whose id is its longest prefix (compared NFKC-
normalized, case-folded, runs of spaces, ``_``, ``-``, ``:`` as one space, ending at a boundary:
``§2`` is not a prefix of ``§2.1``); further parts after `` / `` or `` + `` cite more sections
of the same runbook, and ``(K §...)`` cross-references cite sections of runbook K. A section
whose subsections (by ``level``) are covered is "covered through its subsections", not a gap.
Scenarios whose section is not registered are listed under their runbook, never dropped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from renderchaos.report.doc import Doc, Entry, RunbookInfo, runbook_parts

_SEPARATORS = re.compile(r"[\s_:\-]+")
_CROSS_REF = re.compile(r"\(\s*([A-Za-z][A-Za-z0-9_-]*)\s+([^()]+?)\s*\)")
_ALSO = re.compile(r"\s+[/+]\s+")
_NUMBER = re.compile(r"§\s*([0-9一二三四五六七八九十百零]+(?:\.[0-9一二三四五六七八九十百零]+)*)")


def normalize(text: str) -> str:
    return _SEPARATORS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def _is_boundary(rest: str) -> bool:
    if not rest:
        return True
    if rest[0].isalnum():
        return False
    return not (rest[0] == "." and len(rest) > 1 and rest[1].isalnum())


@dataclass
class Row:
    id: str
    title: str
    title_en: str
    level: int
    entries: list[Entry] = field(default_factory=list)
    via_children: bool = False

    @property
    def depth(self) -> int:
        return max(0, self.level - 1)

    @property
    def gap(self) -> bool:
        return not self.entries and not self.via_children


@dataclass
class RunbookCoverage:
    key: str
    title: str
    file: str
    registered: bool
    title_en: str = ""
    rows: list[Row] = field(default_factory=list)
    unmatched: list[tuple[str, list[Entry]]] = field(default_factory=list)

    @property
    def gaps(self) -> int:
        return sum(1 for r in self.rows if r.gap)

    def section_for(self, ref: str) -> Row | None:
        """The row whose id is the longest prefix of ``ref`` (at a boundary)."""
        norm = normalize(ref)
        best, best_len = None, -1
        for r in self.rows:
            sid = normalize(r.id)
            if len(sid) > best_len and norm.startswith(sid) and _is_boundary(norm[len(sid):]):
                best, best_len = r, len(sid)
        return best


def mentions(books: dict[str, RunbookCoverage], key: str | None, ref: str) -> list[Row]:
    """Every registered section a scenario's (key, section text) cites; empty when the first
    part names no registered section."""
    book = books.get(key or "")
    first = book.section_for(ref) if book is not None and book.registered else None
    if first is None or book is None:
        return []
    out = [first]
    for other_key, other_ref in _CROSS_REF.findall(ref):
        other = books.get(other_key)
        row = other.section_for(other_ref) if other is not None and other.registered else None
        if row is not None:
            out.append(row)
    for part in _ALSO.split(_CROSS_REF.sub(" ", ref))[1:]:
        row = book.section_for(part)
        if row is not None:
            out.append(row)
    unique: list[Row] = []
    for r in out:
        if not any(r is u for u in unique):
            unique.append(r)
    return unique


def coverage(doc: Doc) -> list[RunbookCoverage]:
    books: dict[str, RunbookCoverage] = {}
    for rb in doc.get("runbooks") or []:
        books[str(rb.get("key"))] = _registered(rb)
    for e in doc.get("results", []):
        key, section = runbook_parts(e)
        rows = mentions(books, key, section or "")
        for r in rows:
            r.entries.append(e)
        if rows:
            continue
        k = key or "?"
        book = books.setdefault(k, RunbookCoverage(k, "", "", registered=False))
        text = section or "(no runbook section recorded)"
        for label, group in book.unmatched:
            if label == text:
                group.append(e)
                break
        else:
            book.unmatched.append((text, [e]))
    for book in books.values():
        for i, r in enumerate(book.rows):  # descendants: the following rows of a deeper level
            for child in book.rows[i + 1:]:
                if child.level <= r.level:
                    break
                if child.entries:
                    r.via_children = True
                    break
        book.unmatched.sort(key=lambda item: _order(item[0]))
    # registered runbooks in their registration order, then the others
    return [b for b in books.values() if b.registered] + [b for b in books.values() if not b.registered]


def _registered(rb: RunbookInfo) -> RunbookCoverage:
    book = RunbookCoverage(str(rb.get("key")), str(rb.get("title") or ""), str(rb.get("file") or ""),
                           registered=True, title_en=str(rb.get("title_en") or ""))  # type: ignore[misc]
    for s in rb.get("sections") or []:
        sid = str(s.get("id") or "")
        level = s.get("level")  # type: ignore[misc]
        if not isinstance(level, int):  # older documents: §一 is 1, §一.1 is 2
            m = _NUMBER.match(sid)
            level = m.group(1).count(".") + 1 if m else 1
        book.rows.append(Row(sid, str(s.get("title") or ""), str(s.get("title_en") or ""), level))
    return book


_CN = {c: i for i, c in enumerate("零一二三四五六七八九十")}


def _order(label: str) -> list[tuple[int, object]]:
    """Sort key for section texts: § numbers in order (一 < 二 < ... < 十; 2 < 10), then the text."""
    key: list[tuple[int, object]] = []
    m = _NUMBER.search(label)
    if m:
        for part in m.group(1).split("."):
            key.append((0, int(part) if part.isdigit() else _CN.get(part, 99)))
    key.append((1, label))
    return key
