"""Runbooks as registered documents: a file with sections, cited by scenarios.

Public API::

    Section(id, title, title_en="", level=1)
    RunbookDoc(key, title, file, sections, language="", title_en="", source="")
        .section_for(ref) -> Section | None     longest section id that prefixes ref
        .section(id) -> Section | None          exact id
        .to_dict()                              for results.json
    RunbookRegistry()
        .register(doc) / .get(key) / .resolve(key, ref) -> (doc, section) / .all()
        .mentions(key, ref) -> ((doc, section), ...)   every section a ref cites (coverage)
    default_registry()                          bundled R, A, P, V + entry points, built on first use
    bundled_runbooks()                          the four bundled indexes, freshly read
    register_runbook(path_or_doc, key=None, registry=None)   for a conftest.py
    discover(registry)                          load the "renderchaos.runbooks" entry points
    load_runbook(path, key=None)                a .toml index or a .md runbook
    parse_toml(text, ...), parse_markdown(text, ...)

The bundled indexes (``renderchaos/runbooks/*.toml``) hold titles only; the runbook texts
they index live outside the repository (``../shared/runbooks/``).
Every error is a :class:`renderchaos.errors.ConfigError` that says what to do.
"""

from __future__ import annotations

from renderchaos.runbooks.loader import load_runbook, parse_markdown, parse_toml, slugify
from renderchaos.runbooks.model import RunbookDoc, Section, normalize
from renderchaos.runbooks.registry import (
    BUNDLED,
    ENTRY_POINT_GROUP,
    RunbookRegistry,
    bundled_runbooks,
    default_registry,
    discover,
    register_runbook,
)

__all__ = [
    "BUNDLED",
    "ENTRY_POINT_GROUP",
    "RunbookDoc",
    "RunbookRegistry",
    "Section",
    "bundled_runbooks",
    "default_registry",
    "discover",
    "load_runbook",
    "normalize",
    "parse_markdown",
    "parse_toml",
    "register_runbook",
    "slugify",
]
