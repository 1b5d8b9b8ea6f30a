"""The tagger protocol and registry: "what is in these images?" -> TagResult per image."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..io import LoadedImage
from ..registry import Registry
from .result import TagResult


class Tagger(Protocol):
    name: str

    def tag_batch(self, images: Sequence[LoadedImage]) -> list[TagResult]:
        """One TagResult per image, in order. Model calls cover the whole batch."""
        ...


#: Factories take their own config block and the shared model section (`Registry.build`). Implementations
#: register here; `selfseg.tag.taggers()` imports them.
TAGGERS: Registry[Tagger] = Registry("tagger")
