"""Tag: "what is in this image?" -> nouns with provenance. Chosen by name (`tagger:` in the config)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..registry import Registry
    from .base import TAGGERS, Tagger

__all__ = ["TAGGERS", "Tagger", "build_tagger", "taggers"]


def __getattr__(name: str) -> Any:
    # The registry and protocol load on first use: importing this package (as `selfseg.tag.result` does) runs
    # nothing of the stage.
    if name in ("TAGGERS", "Tagger"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def taggers() -> Registry[Tagger]:
    """The tagger registry, every built-in tagger registered."""
    # Imported here, not at the top: each implementation loads its models' libraries when first built.
    from . import bcc, caption, union, vlm, vocabulary  # noqa: F401  (importing registers them)
    from .base import TAGGERS

    return TAGGERS


def build_tagger(config: Any, name: str | None = None, **kwargs: Any) -> Tagger:
    """The tagger `name` (default: the config's `tagger`) from its own block and the shared model section of
    `config` (a whole `selfseg.config.Config`: the stages never import it, the registry reads the block)."""
    return taggers().build(name or config.tagger, config, **kwargs)
