"""The runbook coverage matrix: every section of every registered runbook, with the scenarios
that prove it and their outcomes. A section no scenario covers is a gap, shown, not hidden.

A scenario covers every section its ``runbook_section`` names: the ``§`` references in it
("§2.2 任务失败 / §2.3 任务超时" covers §2.2 and §2.3), including cross references to another
runbook ("§二.1 认证错误 (A §1.1 401 Unauthorized)" also covers A §1.1). Sections without a
``§`` number match when the scenario's section text starts with their id or title. A parent
section ("§三") whose subsections are covered is "covered through its subsections", not a gap.
Scenarios whose section is not registered are listed under their runbook, not dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from renderchaos.report.doc import Doc, Entry, RunbookInfo, runbook_parts

_SEC = re.compile(r"(?:(?<![A-Za-z])([A-Z])\s+)?§\s*([0-9一二三四五六七八九十百零]+(?:\.[0-9一二三四五六七八九十百零]+)*)")


def refs(key: str | None, text: str) -> list[tuple[str | None, str]]:
    """The (runbook key, section number) pairs a section text names."""
    return [(m.group(1) or key, m.group(2)) for m in _SEC.finditer(text or "")]


@dataclass
class Row:
    id: str
    title: str
    title_en: str
    number: str | None  # the § number ("一.3"), None for a textual section
    depth: int
    entries: list[Entry] = field(default_factory=list)
    via_children: bool = False

    @property
    def gap(self) -> bool:
        return not self.entries and not self.via_children


@dataclass
class RunbookCoverage:
    key: str
    title: str
    file: str
    registered: bool
    rows: list[Row] = field(default_factory=list)
    unmatched: list[tuple[str, list[Entry]]] = field(default_factory=list)

    @property
    def gaps(self) -> int:
        return sum(1 for r in self.rows if r.gap)


def coverage(doc: Doc) -> list[RunbookCoverage]:
    entries = list(doc.get("results", []))
    books: dict[str, RunbookCoverage] = {}
    for rb in doc.get("runbooks") or []:
        books[str(rb.get("key"))] = _registered(rb)
    matched: set[int] = set()
    for i, e in enumerate(entries):
        key, section = runbook_parts(e)
        hits = 0
        for k, number in refs(key, section or ""):
            for row in books[k].rows if k in books else []:
                if row.number == number and e not in row.entries:
                    row.entries.append(e)
                    hits += 1
        if key in books and section:
            for row in books[key].rows:
                if row.number is None and e not in row.entries and (
                        section.startswith(row.id) or (row.title and section.startswith(row.title))):
                    row.entries.append(e)
                    hits += 1
        if hits:
            matched.add(i)
    for book in books.values():
        numbered = [r for r in book.rows if r.number]
        for r in numbered:
            r.via_children = any(c.entries for c in numbered if c.number and c.number.startswith(r.number + "."))
    for i, e in enumerate(entries):
        if i in matched:
            continue
        key, section = runbook_parts(e)
        key = key or "?"
        book = books.get(key)
        if book is None:
            book = books[key] = RunbookCoverage(key, "", "", registered=False)
        text = section or "(no runbook section recorded)"
        for label, group in book.unmatched:
            if label == text:
                group.append(e)
                break
        else:
            book.unmatched.append((text, [e]))
    for book in books.values():
        book.unmatched.sort(key=lambda item: _order(item[0]))
    # registered runbooks in their registration order, then the others
    return [b for b in books.values() if b.registered] + [b for b in books.values() if not b.registered]


def _registered(rb: RunbookInfo) -> RunbookCoverage:
    book = RunbookCoverage(str(rb.get("key")), str(rb.get("title") or ""), str(rb.get("file") or ""),
                           registered=True)
    for s in rb.get("sections") or []:
        sid = str(s.get("id") or "")
        found = refs(None, sid)
        number = found[0][1] if found else None
        title = str(s.get("title") or "")
        if not title and found:  # "§一.3 渲染超时" given as the id alone
            title = _SEC.sub("", sid, count=1).strip()
        book.rows.append(Row(sid, title, str(s.get("title_en") or ""), number,
                             number.count(".") if number else 0))
    return book


_CN = {c: i for i, c in enumerate("零一二三四五六七八九十", start=0)}


def _order(label: str) -> list[tuple[int, object]]:
    """Sort key for section texts: § numbers in order (一 < 二 < ... < 十; 2 < 10), then the text."""
    key: list[tuple[int, object]] = []
    for _, number in refs(None, label)[:1]:
        for part in number.split("."):
            key.append((0, int(part) if part.isdigit() else _CN.get(part, 99)))
    key.append((1, label))
    return key
