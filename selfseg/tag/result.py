"""Typed results of the tagging stage, serialisable to JSON and back."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1


@dataclass
class ClusterMaps:
    """Every map of the clustering, on the largest scale's (H, W) patch grid.

    labels: (H, W) int64 final clusters, contiguous from 0. runs: one (H, W) map per k-means run, in
    `run_keys` order ((scale index, k)), resized (nearest) to the grid, original label ids.
    votes: (m, H, W) the distribution over m labels the CRF starts from. crf: (H, W) argmax after the CRF.
    filtered: (H, W) after the mode filter, before relabelling. timings: wall seconds per step.

    consensus "chain": reference is the index of the run the others are aligned to, aligned the runs
    relabelled to it (Hungarian), votes each label's share of the runs. The consensus_* fields stay None.

    consensus "coassoc": reference is -1 (no run is the reference). consensus_labels: (H, W) the cut of
    the co-association tree, numbered in order of first patch; votes: each patch's mean co-association
    with each of its clusters, normalised; aligned: each run with every cluster renamed to the consensus
    cluster it overlaps most (splits and merges show). merge_heights: (H*W - 1,) the tree's average-linkage
    heights (1 - co-association), ascending; lifetimes: (k_max,) how long each count 1..k_max of clusters
    survives in them; the cut takes the longest. The co-association matrix itself, (H*W)^2 floats, is not
    kept: `coassociation(runs)` rebuilds it from the runs. With features identical on every patch the
    result is one cluster, and there are no runs.
    """

    labels: np.ndarray
    runs: list[np.ndarray]
    run_keys: list[tuple[int, int]]
    reference: int
    aligned: list[np.ndarray]
    votes: np.ndarray
    crf: np.ndarray
    filtered: np.ndarray
    filter_passes: int
    timings: dict[str, float] = field(default_factory=dict)
    consensus: str = "chain"
    consensus_labels: np.ndarray | None = None
    merge_heights: np.ndarray | None = None
    lifetimes: np.ndarray | None = None

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max()) + 1


@dataclass
class NounSupport:
    """A noun and its provenance. support: captions (cluster x cycle) that produced it; cycles: distinct
    caption cycles that produced it; clusters: ids of the clusters whose captions produced it. For the
    chat-model taggers support and cycles count the answers (first and reflections) that listed it.
    found_by: the taggers that found it (set by the "union" tagger; empty otherwise)."""

    noun: str
    support: int
    cycles: int
    clusters: list[int]
    found_by: list[str] = field(default_factory=list)


@dataclass
class ClusterCaptions:
    """One final cluster: its size in patches, its caption per cycle, and the nouns of each caption."""

    cluster: int
    size: int
    captions: list[str]
    nouns: list[list[str]]


@dataclass
class TagResult:
    """What a tagger found in one image.

    nouns: ordered by support (most captions first). clusters: per BCC cluster, captions of all cycles.
    cluster_grid: (h, w) int final cluster map on the patch grid (None for taggers without clusters).
    image_size: (H, W) of the input image, upright. intermediates: every map of the clustering chain.
    timings: wall seconds per stage for the batch this image ran in (`batch_size` images).
    replies: the chat-model taggers' transcript. parts: the "union" tagger's per-tagger results.
    """

    source: str
    image_size: tuple[int, int]
    nouns: list[NounSupport]
    tagger: str
    model: str = ""
    clusters: list[ClusterCaptions] = field(default_factory=list)
    cycles_run: int = 0
    cluster_grid: np.ndarray | None = None
    intermediates: ClusterMaps | None = None
    timings: dict[str, float] = field(default_factory=dict)
    batch_size: int = 1
    meaningless: bool = False  # True when produced by tiny random-init models (smoke config)
    notes: list[str] = field(default_factory=list)
    # Chat-model taggers: every model turn, in order ({"step", "model", "reply", "cached"}).
    replies: list[dict[str, Any]] = field(default_factory=list)
    # "union": each part's own result, by tagger name.
    parts: dict[str, TagResult] = field(default_factory=dict)

    @property
    def tags(self) -> list[str]:
        return [n.noun for n in self.nouns]

    @cached_property
    def cluster_map(self) -> np.ndarray | None:
        """(H, W) cluster map upsampled (nearest) from the patch grid to the input image's size."""
        if self.cluster_grid is None:
            return None
        return upsample_nearest(self.cluster_grid, self.image_size)

    # ------------------------------------------------------------------------------------ serialisation
    def to_dict(self, intermediates: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "source": self.source,
            "image_size": list(self.image_size),
            "tagger": self.tagger,
            "model": self.model,
            "meaningless": self.meaningless,
            "tags": self.tags,
            "nouns": [vars(n) for n in self.nouns],
            "clusters": [vars(c) for c in self.clusters],
            "cycles_run": self.cycles_run,
            "cluster_grid": None if self.cluster_grid is None else self.cluster_grid.tolist(),
            "timings": self.timings,
            "batch_size": self.batch_size,
            "notes": self.notes,
            "replies": self.replies,
            "parts": {k: v.to_dict(intermediates=False) for k, v in self.parts.items()},
        }
        if intermediates and self.intermediates is not None:
            m = self.intermediates
            d["intermediates"] = {
                "runs": [r.tolist() for r in m.runs], "run_keys": [list(k) for k in m.run_keys],
                "reference": m.reference, "aligned": [a.tolist() for a in m.aligned],
                "votes": np.round(m.votes, 6).tolist(), "crf": m.crf.tolist(), "filtered": m.filtered.tolist(),
                "filter_passes": m.filter_passes, "timings": m.timings, "consensus": m.consensus,
            }
            if m.consensus_labels is not None:
                d["intermediates"].update(
                    consensus_labels=m.consensus_labels.tolist(), merge_heights=np.round(m.merge_heights, 6).tolist(),
                    lifetimes=np.round(m.lifetimes, 6).tolist())
        return d

    def to_json(self, intermediates: bool = True) -> str:
        return json.dumps(self.to_dict(intermediates))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TagResult:
        """The TagResult a `to_dict` / `save` JSON describes; ValueError with one line for anything else."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a selfseg tag result (a JSON object), got {type(d).__name__}")
        if "segmenter" in d and "tagger" not in d:
            raise ValueError("expected a selfseg tag result, got a segmentation (read it with "
                             "selfseg.Segmentation.from_json; its tags are under 'tags')")
        if d.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"expected a selfseg tag result with schema {SCHEMA_VERSION}, got {d.get('schema')!r}")
        try:
            return cls._from_fields(d)
        except KeyError as exc:
            raise ValueError(f"expected a selfseg tag result, missing field {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"expected a selfseg tag result, malformed field ({exc})") from None

    @classmethod
    def _from_fields(cls, d: dict[str, Any]) -> TagResult:
        grid = None if d["cluster_grid"] is None else np.asarray(d["cluster_grid"], dtype=np.int64)
        inter = None
        if d.get("intermediates"):
            m = d["intermediates"]
            arr = lambda x: np.asarray(x, dtype=np.int64)
            inter = ClusterMaps(
                labels=grid, runs=[arr(r) for r in m["runs"]], run_keys=[tuple(k) for k in m["run_keys"]],
                reference=m["reference"], aligned=[arr(a) for a in m["aligned"]],
                votes=np.asarray(m["votes"], dtype=np.float32), crf=arr(m["crf"]), filtered=arr(m["filtered"]),
                filter_passes=m["filter_passes"], timings=m["timings"], consensus=m.get("consensus", "chain"),
                consensus_labels=arr(m["consensus_labels"]) if "consensus_labels" in m else None,
                merge_heights=np.asarray(m["merge_heights"]) if "merge_heights" in m else None,
                lifetimes=np.asarray(m["lifetimes"]) if "lifetimes" in m else None,
            )
        return cls(
            source=d["source"], image_size=tuple(d["image_size"]), tagger=d["tagger"], model=d["model"],
            nouns=[NounSupport(**n) for n in d["nouns"]], clusters=[ClusterCaptions(**c) for c in d["clusters"]],
            cycles_run=d["cycles_run"], cluster_grid=grid, intermediates=inter, timings=d["timings"],
            batch_size=d["batch_size"], meaningless=d["meaningless"], notes=d.get("notes", []),
            replies=d.get("replies", []), parts={k: cls._from_fields(v) for k, v in d.get("parts", {}).items()},
        )

    @classmethod
    def from_json(cls, text: str | Path) -> TagResult:
        """From JSON text or a file (a `<stem>.json` that `save` or `selfseg tag` wrote); ValueError, one line,
        when it cannot be read or is not JSON."""
        return cls.from_dict(read_json_result(text, "tag result"))


def read_json_result(source: str | Path, what: str) -> Any:
    """The parsed JSON of text (starting with "{") or of a file; ValueError in one line naming the file."""
    where = "the text"
    text = source
    if isinstance(source, Path) or not str(source).lstrip().startswith("{"):
        where = str(source)
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).split(":")[0]
            raise ValueError(f"{where}: cannot read a selfseg {what} from it ({reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not a selfseg {what} (not JSON: {exc.msg}, line {exc.lineno})") from None


def upsample_nearest(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of an (h, w) label grid to (H, W); uint8 when labels fit."""
    h, w = grid.shape
    rows = (np.arange(size[0]) * h) // size[0]
    cols = (np.arange(size[1]) * w) // size[1]
    dtype = np.uint8 if grid.max(initial=0) < 256 else np.int32
    return grid.astype(dtype)[rows[:, None], cols[None, :]]


def cluster_names(tags: TagResult) -> dict[int, str]:
    """Each cluster's name: the noun its own captions produced most often (ties: the noun with more
    support over the whole image, then the one the result ranks first). Clusters whose captions had no
    noun kept by the result are left out."""
    nouns = {n.noun: (-n.support, i) for i, n in enumerate(tags.nouns)}
    names = {}
    for c in tags.clusters:
        counts = Counter(n for caption_nouns in c.nouns for n in caption_nouns if n in nouns)
        if counts:
            names[c.cluster] = min(counts, key=lambda n: (-counts[n], nouns[n]))
    return names


def rank_nouns(clusters: list[ClusterCaptions], min_support: int = 1) -> list[NounSupport]:
    """Aggregate per-caption nouns into NounSupport, ordered by support, cycles, then first appearance."""
    stats: dict[str, dict[str, Any]] = {}
    n_cycles = max((len(c.captions) for c in clusters), default=0)
    for cycle in range(n_cycles):
        for c in clusters:
            if cycle >= len(c.nouns):
                continue
            for noun in c.nouns[cycle]:
                s = stats.setdefault(noun, {"support": 0, "cycles": set(), "clusters": set(), "order": len(stats)})
                s["support"] += 1
                s["cycles"].add(cycle)
                s["clusters"].add(c.cluster)
    ranked = sorted(stats.items(), key=lambda kv: (-kv[1]["support"], -len(kv[1]["cycles"]), kv[1]["order"]))
    return [
        NounSupport(noun=k, support=v["support"], cycles=len(v["cycles"]), clusters=sorted(v["clusters"]))
        for k, v in ranked
        if len(v["cycles"]) >= min_support
    ]
