"""The project's own tests, in two lanes.

The fast lane needs no container engine: ``pytest tests -m "not containers and not slow"``.
A test that starts containers (it asks for one of the fixtures below, or is marked) is marked
``containers`` here, so the selection never depends on a hand-kept list.
"""

from __future__ import annotations

import pytest

#: fixtures that start containers (the plugin's, and the reference stack tests' live stack)
CONTAINER_FIXTURES = {"chaos_stack", "chaos_context", "chaos_images", "chaos_target", "scenario_target",
                      "live_stack"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CONTAINER_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.containers)
