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


#: Factories take the whole Config; each reads its own sections. Implementations register here and
#: import nothing else of this package's base; `selfseg.tag.build_tagger` imports them.
TAGGERS: Registry[Tagger] = Registry("tagger")
