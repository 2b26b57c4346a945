"""Container engine discovery and image provisioning."""

from renderchaos.provisioning.engine.engine import Engine, configure_testcontainers, find_engine
from renderchaos.provisioning.engine.images import RECIPES, ImageResolver

__all__ = ["Engine", "ImageResolver", "RECIPES", "configure_testcontainers", "find_engine"]
