"""Runbooks as registered documents: a file with sections, cited by scenarios."""

from __future__ import annotations

from renderchaos.runbooks.loader import load_runbook, parse_markdown, parse_toml, slugify
from renderchaos.runbooks.model import RunbookDoc, Section, normalize

__all__ = ["RunbookDoc", "Section", "load_runbook", "normalize", "parse_markdown", "parse_toml", "slugify"]
