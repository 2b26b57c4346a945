"""The scenario catalog: every runbook case of ../shared/SCENARIOS.md as plain data.

One module per runbook area. ``ALL`` lists every scenario; ids are stable (pytest ids,
markers, report rows).
"""

from __future__ import annotations

from renderchaos.scenario import Scenario


def catalog() -> dict[str, Scenario]:
    import importlib
    import pkgutil

    import scenarios

    out: dict[str, Scenario] = {}
    for mod in pkgutil.iter_modules(scenarios.__path__):
        m = importlib.import_module(f"scenarios.{mod.name}")
        for value in vars(m).values():
            if isinstance(value, Scenario):
                if value.id in out and out[value.id] is not value:
                    raise ValueError(f"scenario id {value.id} declared twice")
                out[value.id] = value
    return out
