"""Platform adapters: how the suite talks to a render platform (see :mod:`.base`).

An adapter is found by name through the ``renderchaos.platforms`` entry point group (this
distribution registers ``refstack`` and ``unmanic``), or given as ``package.module:Class``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from renderchaos.errors import ConfigError
from renderchaos.platforms.base import (
    TERMINAL, Account, Answer, ApiError, Asset, ErrorKind, Feature, Health, Job, JobState, Platform,
    PlatformEndpoint, RenderRequest,
)

GROUP = "renderchaos.platforms"

__all__ = ["GROUP", "TERMINAL", "Account", "Answer", "ApiError", "Asset", "ErrorKind", "Feature", "Health", "Job",
           "JobState", "Platform", "PlatformEndpoint", "RenderRequest", "available", "load_platform",
           "platform_class"]


def available() -> dict[str, str]:
    """Adapter name -> ``module:Class`` of every registered adapter."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def platform_class(spec: str, where: str = "platform") -> type[Platform]:
    """Resolve ``spec``: a registered name (``refstack``) or ``package.module:Class``."""
    if ":" not in spec:
        found = [ep for ep in entry_points(group=GROUP) if ep.name == spec]
        if not found:
            raise ConfigError(f"{where}: no platform adapter named {spec!r}; registered: "
                              f"{sorted(available()) or 'none'}. Give 'package.module:Class', or register yours "
                              f"under the entry point group {GROUP!r} (see docs/your-platform.md)")
        cls = found[0].load()
    else:
        module, _, attr = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{where}: cannot load platform adapter {spec!r}: {exc}. Is the module importable "
                              "from the directory pytest runs in (or installed)?") from exc
    if not (isinstance(cls, type) and issubclass(cls, Platform)):
        raise ConfigError(f"{where}: {spec!r} is not a subclass of renderchaos.platforms.Platform")
    return cls


def load_platform(spec: str, endpoint: PlatformEndpoint, timeout: float = 10.0, where: str = "platform",
                  **kwargs: Any) -> Platform:
    """Build the adapter ``spec`` for ``endpoint``."""
    return platform_class(spec, where)(endpoint, timeout=timeout, **kwargs)
