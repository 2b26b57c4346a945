"""Which runbooks exist: a :class:`RunbookRegistry`, the bundled four, and user registration.

A team adds its own runbook without forking, in one of two ways:

* from a ``conftest.py`` (or any code that runs before the runbook is cited)::

      from renderchaos.runbooks import register_runbook
      register_runbook(Path(__file__).parent / "ops-runbook.md", key="OPS")

* from an installed package, with an entry point in the ``renderchaos.runbooks`` group whose
  object is a callable returning a :class:`RunbookDoc` or a path (a path, or the object
  itself, also works)::

      [project.entry-points."renderchaos.runbooks"]
      OPS = "ops_chaos.runbooks:ops_runbook"

  The entry point's name is the runbook's key: a Markdown runbook without a key gets it, a
  runbook that names another key is an error.

:func:`default_registry` is the process-wide registry: the bundled runbooks plus every entry
point, built on first use (nothing happens at import). Registering the same runbook twice is
harmless; two different runbooks under one key are an error that names both files.
"""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from renderchaos.errors import ConfigError
from renderchaos.runbooks.loader import load_runbook
from renderchaos.runbooks.model import RunbookDoc, Section

ENTRY_POINT_GROUP = "renderchaos.runbooks"
BUNDLED_DIR = Path(__file__).parent
BUNDLED = (  # key: index file, next to this module
    ("R", "render-platform.toml"),
    ("A", "ai-service.toml"),
    ("P", "peertube-ffmpeg-pileup.toml"),
    ("V", "avideo-encoder-blacklist.toml"),
)

_CROSS_REF = re.compile(r"\(\s*([A-Za-z][A-Za-z0-9_-]*)\s+([^()]+?)\s*\)")
_ALSO = re.compile(r"\s+[/+]\s+")


class RunbookRegistry:
    """Runbooks by key, in registration order."""

    def __init__(self, docs: "tuple[RunbookDoc, ...] | list[RunbookDoc]" = ()) -> None:
        self._docs: dict[str, RunbookDoc] = {}
        for doc in docs:
            self.register(doc)

    def register(self, doc: RunbookDoc) -> RunbookDoc:
        """Add ``doc``. The same content again is a no-op (returns the first); another runbook
        under a registered key is a :class:`ConfigError` naming both files."""
        if not isinstance(doc, RunbookDoc):
            raise ConfigError(f"register() takes a RunbookDoc, got {type(doc).__name__} {doc!r}; "
                              "load a file with load_runbook(path) or use register_runbook(path)")
        have = self._docs.get(doc.key)
        if have is None:
            self._docs[doc.key] = doc
            return doc
        if have == doc:
            return have
        raise ConfigError(
            f"runbook key {doc.key!r} is registered twice with different content: {have.file} "
            f"(from {have.source or 'code'}) and {doc.file} (from {doc.source or 'code'}); expected one runbook "
            "per key. Give one of them another key, or register the same index only once",
            key=doc.key, files=(have.file, doc.file))

    def get(self, key: str) -> RunbookDoc:
        """The runbook registered under ``key``; a :class:`ConfigError` listing the keys if none."""
        doc = self._docs.get(key)
        if doc is None:
            raise ConfigError(f"unknown runbook key {key!r}; {self._known()}. Use one of these keys, or "
                              "register your runbook: register_runbook(path, key=...) from a conftest.py, or "
                              f"an entry point in the {ENTRY_POINT_GROUP!r} group", key=key)
        return doc

    def resolve(self, key: str, ref: str) -> tuple[RunbookDoc, Section]:
        """The runbook and section a scenario's ``key`` + ``ref`` cite (longest id prefix)."""
        doc = self.get(key)
        section = doc.section_for(ref)
        if section is None:
            listing = "; ".join(s.label() for s in doc.sections)
            raise ConfigError(
                f"runbook {doc} has no section that {ref!r} starts with; expected the ref to start with "
                f"one of its section ids: {listing}. Start the ref with one of these ids, or add the "
                f"section to the runbook's index ({doc.source or doc.file})", key=key, ref=ref)
        return doc, section

    def mentions(self, key: str, ref: str) -> tuple[tuple[RunbookDoc, Section], ...]:
        """Every section ``ref`` cites: the one :meth:`resolve` gives first, then the further
        parts after `` / `` or `` + `` in the same runbook, then ``(K §...)`` cross references to
        other registered runbooks. Parts that name no registered section are left out; the first
        must resolve. For coverage: a scenario "§2.2 任务失败 / §2.3 任务超时" covers both."""
        out = [self.resolve(key, ref)]
        doc = out[0][0]
        for other_key, other_ref in _CROSS_REF.findall(ref):
            other = self._docs.get(other_key)
            section = other.section_for(other_ref) if other is not None else None
            if other is not None and section is not None:
                out.append((other, section))
        for part in _ALSO.split(_CROSS_REF.sub(" ", ref))[1:]:
            section = doc.section_for(part)
            if section is not None:
                out.append((doc, section))
        unique: list[tuple[RunbookDoc, Section]] = []
        for pair in out:
            if not any(pair[0].key == u[0].key and pair[1] == u[1] for u in unique):
                unique.append(pair)
        return tuple(unique)

    def all(self) -> tuple[RunbookDoc, ...]:
        return tuple(self._docs.values())

    def keys(self) -> tuple[str, ...]:
        return tuple(self._docs)

    def __contains__(self, key: object) -> bool:
        return key in self._docs

    def __iter__(self) -> Iterator[RunbookDoc]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self._docs)

    def _known(self) -> str:
        if not self._docs:
            return "no runbook is registered"
        return "registered: " + ", ".join(str(d) for d in self._docs.values())

    def __repr__(self) -> str:
        return f"RunbookRegistry({', '.join(self._docs)})"


# ---------------------------------------------------------------------------------------
def bundled_runbooks() -> tuple[RunbookDoc, ...]:
    """The runbooks renderchaos ships indexes for (R, A, P, V), freshly read."""
    docs = []
    for key, name in BUNDLED:
        doc = load_runbook(BUNDLED_DIR / name, source=f"renderchaos/runbooks/{name}")
        if doc.key != key:
            raise ConfigError(f"bundled index {name} says key {doc.key!r}; expected {key!r}")
        docs.append(doc)
    return tuple(docs)


def _as_doc(value: Any, key: str | None, source: str) -> RunbookDoc:
    if isinstance(value, RunbookDoc):
        if key is not None and value.key != key:
            raise ConfigError(f"runbook {source}: it says key {value.key!r} but was registered as {key!r}; "
                              "make them agree")
        return value
    if isinstance(value, (str, os.PathLike)):
        return load_runbook(value, key=key)
    raise ConfigError(f"runbook {source}: got {type(value).__name__} {value!r}; expected a RunbookDoc or "
                      "the path of a .toml index or .md runbook")


def discover(registry: RunbookRegistry) -> tuple[RunbookDoc, ...]:
    """Register every runbook of the ``renderchaos.runbooks`` entry point group into
    ``registry``; returns them. A failing entry point is a :class:`ConfigError` naming it."""
    found = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep.dist, "name", None) or "?"
        where = f"entry point {ep.name} = {ep.value} (distribution {dist}, group {ENTRY_POINT_GROUP})"
        try:
            obj = ep.load()
            value = obj() if callable(obj) else obj
        except Exception as exc:  # their code: any failure is reported as ours, naming it
            raise ConfigError(f"{where} failed: {type(exc).__name__}: {exc}; expected it to return a "
                              "RunbookDoc or a runbook path. Fix or uninstall that package",
                              entry_point=ep.name) from exc
        try:
            found.append(registry.register(_as_doc(value, ep.name, where)))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}", entry_point=ep.name) from exc
    return tuple(found)


_DEFAULT: RunbookRegistry | None = None


def default_registry() -> RunbookRegistry:
    """The process-wide registry: the bundled runbooks, then the entry points (first call only)."""
    global _DEFAULT
    if _DEFAULT is None:
        registry = RunbookRegistry(bundled_runbooks())
        _DEFAULT = registry  # before discovery: an entry point may itself call register_runbook()
        try:
            discover(registry)
        except BaseException:
            _DEFAULT = None
            raise
    return _DEFAULT


def register_runbook(path_or_doc: "str | os.PathLike[str] | RunbookDoc", key: str | None = None,
                     registry: RunbookRegistry | None = None) -> RunbookDoc:
    """Load (if a path) and register a runbook, by default into :func:`default_registry`.

    For a conftest.py: ``register_runbook(Path(__file__).parent / "ops.md", key="OPS")``.
    """
    doc = _as_doc(path_or_doc, key, str(path_or_doc) if not isinstance(path_or_doc, RunbookDoc) else "code")
    return (registry if registry is not None else default_registry()).register(doc)
