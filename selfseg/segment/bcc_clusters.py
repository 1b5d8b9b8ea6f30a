"""The BCC cluster map itself as a segmentation (the paper's low-resolution intermediate, for ablations)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ..io import LoadedImage
from ..tag.result import TagResult, cluster_names, upsample_nearest
from .base import SEGMENTERS, SegmentPlan
from .result import Instances


def cluster_instances(tags: TagResult, size: tuple[int, int] | None = None) -> Instances:
    """One instance per named cluster: its patch mask upsampled to `size` (default: the tagged image's),
    its box, and score = the share of the cluster's captions that produced its name (mask score 1.0: there is
    no mask model). `classes` are the cluster names, in cluster order."""
    if tags.cluster_grid is None:
        raise ValueError(f"expected a result with a cluster map (tagger 'bcc'), got tagger {tags.tagger!r}")
    h, w = size or tags.image_size
    names = cluster_names(tags)
    cmap = upsample_nearest(tags.cluster_grid, (h, w))
    masks, boxes, scores, labels = [], [], [], []
    for c in tags.clusters:
        if c.cluster not in names:
            continue
        m = cmap == c.cluster
        # the box from the rows and columns the mask touches: no index array of every pixel
        ys = np.flatnonzero(m.any(1))
        if len(ys) == 0:
            continue
        xs = np.flatnonzero(m.any(0))
        masks.append(m)
        boxes.append([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1])
        scores.append(sum(names[c.cluster] in ns for ns in c.nouns) / max(len(c.nouns), 1))
        labels.append(names[c.cluster])
    return Instances(masks=np.asarray(masks, dtype=bool).reshape(len(labels), h, w), boxes=boxes, scores=scores,
                     mask_scores=np.ones(len(labels)), labels=labels,
                     classes=list(dict.fromkeys(names[c] for c in sorted(names))))


@SEGMENTERS.register("bcc_clusters")
class BccClustersSegmenter:
    """The BCC cluster map, upsampled to the loaded image, each cluster named by its top noun. Needs the
    `bcc` tagger's result (vocabulary "self" or "union"); the plan's classes beyond the cluster names are
    unused."""

    name = "bcc_clusters"

    def __init__(self, config: None = None, models: Any = None) -> None:
        pass

    def segment(self, image: LoadedImage, plan: SegmentPlan) -> Instances:
        tags = plan.tags
        if tags is None or tags.cluster_grid is None:
            raise ConfigError("segmenter 'bcc_clusters' needs the bcc tagger's clusters: use tagger: bcc with "
                              "segment.vocabulary self or union")
        size = (image.image.height, image.image.width)
        out = cluster_instances(tags, size)  # the map at the loaded image's size
        if not out.labels:
            return Instances.empty(size, "no cluster produced a noun")
        return out
