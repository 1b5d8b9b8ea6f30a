"""The BCC cluster map itself as a segmentation (the paper's low-resolution intermediate, for ablations)."""
from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from ..config import Config
from ..io import LoadedImage
from ..tag.result import TagResult
from .base import SEGMENTERS, empty_segmentation
from .result import Segmentation


def cluster_names(tags: TagResult) -> dict[int, str]:
    """Each cluster's name: the noun its own captions produced most often (ties: the noun with more
    support over the whole image, then first seen). Clusters whose captions had no noun are left out."""
    rank = {n.noun: i for i, n in enumerate(tags.nouns)}  # nouns are ordered by overall support
    names = {}
    for c in tags.clusters:
        counts = Counter(n for caption_nouns in c.nouns for n in caption_nouns if n in rank)
        if counts:
            names[c.cluster] = min(counts, key=lambda n: (-counts[n], rank[n]))
    return names


def segment_from_clusters(tags: TagResult) -> Segmentation:
    """One instance per named cluster: its upsampled patch mask, box, and score = the share of the
    cluster's captions that produced its name (mask score 1.0: there is no mask model)."""
    h, w = tags.image_size
    if tags.cluster_grid is None:
        raise ValueError(f"expected a result with a cluster map (tagger 'bcc'), got tagger {tags.tagger!r}")
    names = cluster_names(tags)
    cmap = tags.cluster_map
    classes = list(dict.fromkeys(names[c] for c in sorted(names)))
    masks, boxes, scores, labels = [], [], [], []
    for c in tags.clusters:
        if c.cluster not in names:
            continue
        m = cmap == c.cluster
        ys, xs = np.nonzero(m)
        if len(ys) == 0:
            continue
        masks.append(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        scores.append(sum(names[c.cluster] in ns for ns in c.nouns) / max(len(c.nouns), 1))
        labels.append(names[c.cluster])
    return Segmentation(
        image_size=(h, w), masks=np.asarray(masks, dtype=bool).reshape(len(labels), h, w), boxes=boxes,
        scores=scores, mask_scores=np.ones(len(labels)), labels=labels, classes=classes,
        segmenter="bcc_clusters", source=tags.source, tags=tags,
    )


@SEGMENTERS.register("bcc_clusters")
class BccClustersSegmenter:
    """The BCC cluster map, upsampled to the loaded image, each cluster named by its top noun. Needs the
    `bcc` tagger's result (vocabulary "self" or "union"); `classes` beyond the cluster names are unused."""

    name = "bcc_clusters"

    def __init__(self, config: Config) -> None:
        self.config = config

    def segment(self, image: LoadedImage, classes: list[str], tags: TagResult | None,
                prompts: dict[str, str] | None = None) -> Segmentation:
        if tags is None or tags.cluster_grid is None:
            from ..errors import ConfigError

            raise ConfigError("segmenter 'bcc_clusters' needs the bcc tagger's clusters: use tagger: bcc with "
                              "segment.vocabulary self or union")
        h, w = image.image.height, image.image.width
        seg = segment_from_clusters(dataclasses.replace(tags, image_size=(h, w)))  # map at the loaded size
        if not seg.labels:
            return empty_segmentation(image, classes, self.name, "no cluster produced a noun", tags)
        seg.tags = tags
        return seg
