"""selfseg: training-free, self-guided, open-vocabulary image segmentation.

`import selfseg` is cheap: each public name below is imported from its module on first use, so torch,
transformers and spaCy load when a stage is built, not here.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

# public name -> the module that defines it
_LAZY = {
    # the pipeline
    "SelfSeg": "selfseg.pipeline",
    "BatchItem": "selfseg.pipeline",
    "Config": "selfseg.config",
    "load_config": "selfseg.config",
    "load_image": "selfseg.io",
    # results
    "TagResult": "selfseg.tag.result",
    "NounSupport": "selfseg.tag.result",
    "ClusterCaptions": "selfseg.tag.result",
    "ClusterMaps": "selfseg.tag.result",
    "Segmentation": "selfseg.segment.result",
    # what a custom segmenter gets and returns (README: Architecture)
    "SegmentPlan": "selfseg.segment.base",
    "Instances": "selfseg.segment.result",
    "Detections": "selfseg.locate.result",
    # the clustering chain on any features
    "ensemble_cluster": "selfseg.tag.clustering",
    # errors
    "SelfSegError": "selfseg.errors",
    "ConfigError": "selfseg.errors",
    "ImageError": "selfseg.errors",
    "ResourceMissingError": "selfseg.errors",
    "DatasetError": "selfseg.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name == "clustering":
        return importlib.import_module("selfseg.tag.clustering")
    raise AttributeError(f"module 'selfseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
