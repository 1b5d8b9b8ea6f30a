"""Locate: class names (or phrases) -> boxes per image. Chosen by name from `LOCATORS`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..registry import Registry
    from .base import LOCATORS, Locator

__all__ = ["LOCATORS", "Locator", "locators"]


def __getattr__(name: str) -> Any:
    # The registry and protocol load on first use: importing this package (as `selfseg.locate.result` does) runs
    # nothing of the stage.
    if name in ("LOCATORS", "Locator"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def locators() -> Registry[Locator]:
    """The locator registry, every built-in locator registered."""
    # Imported here, not at the top: `import selfseg.locate` stays free of the model libraries.
    from . import grounding_dino  # noqa: F401  (importing registers it)
    from .base import LOCATORS

    return LOCATORS
