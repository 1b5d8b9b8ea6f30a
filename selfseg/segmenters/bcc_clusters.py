"""The BCC cluster map itself as a segmentation (the paper's low-resolution intermediate, for ablations)."""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..results import TagResult
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
