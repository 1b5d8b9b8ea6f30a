"""Locate: class names (or phrases) -> boxes per image. Chosen by name from `LOCATORS`."""
from __future__ import annotations

from ..registry import Registry
from .base import LOCATORS, Locator

__all__ = ["LOCATORS", "Locator", "locators"]


def locators() -> Registry[Locator]:
    """The locator registry, every built-in locator registered."""
    # Imported here, not at the top: `import selfseg.locate` stays free of the model libraries.
    from . import grounding_dino  # noqa: F401  (importing registers it)

    return LOCATORS
