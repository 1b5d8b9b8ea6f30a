"""selfseg: training-free, self-guided, open-vocabulary image segmentation.

`import selfseg` is cheap: torch, transformers and spaCy load when a stage is built, not here.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "SelfSeg": "selfseg.pipeline",
    "BatchItem": "selfseg.pipeline",
    "Config": "selfseg.config",
    "load_config": "selfseg.config",
    "TagResult": "selfseg.results",
    "NounSupport": "selfseg.results",
    "ClusterCaptions": "selfseg.results",
    "ClusterMaps": "selfseg.results",
    "ensemble_cluster": "selfseg.clustering",
    "load_image": "selfseg.io",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "clustering":
        import importlib

        return importlib.import_module("selfseg.clustering")
    raise AttributeError(f"module 'selfseg' has no attribute {name!r}")
