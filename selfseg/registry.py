"""Name -> component registries, one per pluggable kind (taggers, locators, mask models, segmenters, datasets,
label mappers).

A component is one file and one registration. The registration says everything the rest of selfseg needs to
know without building it: its factory, its own config block (a dataclass that validates itself), where that
block sits in a config file, the checkpoints it loads, and the components of the same kind it is made of.
CLI choices, `selfseg download`'s list and the tiny-model warning all read these declarations.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def _no_checkpoints(block: Any, models: Any) -> list[str]:
    return []


@dataclass(frozen=True)
class Component(Generic[T]):
    """One registered component.

    factory: builds it, as `factory(block, models, **parts)`. config: the dataclass of its own settings (None:
    it has none). section: where that block sits in a config file: a dotted path ("segment.clipseg") to a
    block of that type, or "" for a block whose fields are top-level sections or keys of their own names.
    checkpoints: `(block, models) -> ids` of the checkpoints it loads (models: the shared `model` section).
    parts: `block -> names` of other components of the same registry it is built from (their checkpoints
    count as its own). takes_prompts: it reads a phrase per class (prompt enrichment applies).
    """

    kind: str
    name: str
    factory: Callable[..., T]
    config: type | None = None
    section: str = ""
    checkpoints: Callable[[Any, Any], list[str]] = _no_checkpoints
    parts: Callable[[Any], list[str]] | None = None
    takes_prompts: bool = False

    def block(self, config: Any) -> Any:
        """This component's settings out of a whole config: the object at `section`, or (section "") a block
        assembled from the config's top-level entries of the block's field names. None without settings."""
        if self.section:
            node = config
            for part in self.section.split("."):
                node = getattr(node, part)
            return node
        if self.config is None:
            return None
        return self.config(**{f.name: getattr(config, f.name) for f in fields(self.config)})

    def checkpoint_ids(self, config: Any, registry: Registry[T]) -> list[str]:
        """The checkpoints it loads under `config`, its parts' included, each once."""
        block = self.block(config)
        ids = list(self.checkpoints(block, config.model))
        for part in self.parts(block) if self.parts else []:
            ids += registry.component(part).checkpoint_ids(config, registry)
        return list(dict.fromkeys(ids))


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._components: dict[str, Component[T]] = {}

    def register(self, name: str, *, config: type | None = None, section: str = "",
                 checkpoints: Callable[[Any, Any], list[str]] | None = None,
                 parts: Callable[[Any], list[str]] | None = None,
                 takes_prompts: bool = False) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._components:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._components[name] = Component(self.kind, name, factory, config, section,
                                               checkpoints or _no_checkpoints, parts, takes_prompts)
            return factory

        return deco

    def names(self) -> list[str]:
        return sorted(self._components)

    def component(self, name: str) -> Component[T]:
        try:
            return self._components[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}") from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.component(name).factory(*args, **kwargs)

    def build(self, name: str, config: Any, **kwargs: Any) -> T:
        """The component `name` built from a whole config: `factory(block, config.model, **kwargs)`, with its
        parts built first and passed as `parts={name: component}`."""
        comp = self.component(name)
        block = comp.block(config)
        if comp.parts and "parts" not in kwargs:  # parts given by the caller are used, not built again
            kwargs["parts"] = {n: self.build(n, config) for n in comp.parts(block)}
        return comp.factory(block, config.model, **kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._components
