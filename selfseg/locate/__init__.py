"""Locate: class names (or phrases) -> boxes per image. Chosen by name from `LOCATORS`."""
from __future__ import annotations

from .base import LOCATORS, Locator

__all__ = ["LOCATORS", "Locator"]
