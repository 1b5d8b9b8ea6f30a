"""The locator protocol and registry: class names per image -> boxes (Detections) per image."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ..io import LoadedImage
from ..registry import Registry
from .result import Detections


class Locator(Protocol):
    name: str

    def locate(self, images: Sequence[LoadedImage], classes: Sequence[Sequence[str]],
               prompts: Sequence[Mapping[str, str] | None]) -> list[Detections]:
        """One Detections per image, in order: boxes in pixels of the loaded image, each labelled with one of
        that image's classes. prompts: per image, the text to prompt for a class instead of the class (a
        class it does not name is prompted as itself); None or empty: every class as itself."""
        ...


#: Factories take their own config block and the shared model section (`Registry.build`); a locator registers
#: when its module is imported, and `selfseg.locate.locators()` imports them.
LOCATORS: Registry[Locator] = Registry("locator")
