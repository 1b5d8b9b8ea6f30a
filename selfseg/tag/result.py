"""Typed results of the tagging stage, serialisable to JSON and back."""
from __future__ import annotations

import copy
import json
import re
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1


# ------------------------------------------------------------------------- shared by every result type
def values_equal(a: Any, b: Any) -> bool:
    """Equality of result fields. Arrays are equal when shape and values are, whatever their dtype (a round
    trip through JSON may widen int32 to int64); NaN equals NaN, so a result equals its own copy. A list
    equals a tuple of the same items (an image_size given as a list is the same size)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        nan = a.dtype.kind in "fc" and b.dtype.kind in "fc"  # isnan refuses ints, bools and strings
        return bool(np.array_equal(a, b, equal_nan=nan))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:  # NaN, e.g. a timing never taken
        return True
    return bool(a == b)


def fields_equal(a: Any, b: Any) -> bool:
    """Two dataclass results of the same type with equal fields (`values_equal`); caches are no field."""
    return all(values_equal(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))


class ValueEquality:
    """Equality of every field (`values_equal`: arrays by shape and values, NaN equal to NaN) for a
    `@dataclass(eq=False)` result. Results are mutable, so unhashable."""

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return fields_equal(self, other) if type(other) is type(self) else NotImplemented


def short_list(items: list[Any], keep: int = 6) -> str:
    """A list's repr cut to its first items, with the count of the rest."""
    head = ", ".join(repr(x) for x in items[:keep])
    return f"[{head}, ... {len(items) - keep} more]" if len(items) > keep else f"[{head}]"


def array_summary(a: np.ndarray | None) -> str:
    return "None" if a is None else f"<{a.dtype} {tuple(a.shape)}>"


def check_schema(d: dict[str, Any], what: str, current: int, default: Any = None) -> None:
    """ValueError in one line unless `d` has the schema this selfseg reads."""
    schema = d.get("schema", default)
    if type(schema) is int and schema == current:  # type(): True == 1, but a bool is no schema
        return
    got = "no 'schema' field" if "schema" not in d else repr(schema)
    message = f"expected a selfseg {what} with schema {current}, got {got}"
    if type(schema) is int and schema > current:
        message += ": written by a newer selfseg; upgrading selfseg reads it"
    raise ValueError(message)


def known_fields(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """Deep copies of the entries of `d` that are fields of the dataclass `cls`: a newer selfseg may add
    fields within a schema, which this one ignores, and the result must not share lists with `d`."""
    names = {f.name for f in fields(cls)}
    return {k: copy.deepcopy(v) for k, v in d.items() if k in names}


def as_boxes(boxes: Any, n: int | None = None) -> np.ndarray:
    """(N, 4) float32 xyxy boxes; n: the count they must have. Checked before any reshape, as a reshape
    would read (2, 6) numbers as three boxes."""
    a = np.asarray(boxes, dtype=np.float32)
    if a.size == 0 and not n:
        return a.reshape(0, 4)
    if a.ndim != 2 or a.shape[1] != 4 or (n is not None and len(a) != n):
        raise ValueError(f"expected ({'N' if n is None else n}, 4) boxes (xyxy), got shape {a.shape}")
    return a


def as_vector(values: Any, n: int | None, what: str) -> np.ndarray:
    """(N,) float32 values, one per instance; n: the count they must have."""
    a = np.asarray(values, dtype=np.float32)
    if a.size == 0 and not n:
        return a.reshape(0)
    if a.ndim != 1 or (n is not None and len(a) != n):
        raise ValueError(f"expected ({'N' if n is None else n},) {what}, got shape {a.shape}")
    return a


# How selfseg.io.input_name names an input that is no file (`<ndarray>`, `<Image>`).
_PLACEHOLDER = re.compile(r"<\w+>")


def source_file_name(source: str) -> str:
    """The file name outputs of an image named `source` take after: the file's name, or "image" for an
    in-memory image, whose placeholder name (`<ndarray>`) is no valid file name on Windows."""
    if not source or _PLACEHOLDER.fullmatch(source):
        return "image"
    return Path(source).name or "image"


def source_stem(source: str) -> str:
    return Path(source_file_name(source)).stem or "image"


@dataclass(eq=False)
class ClusterMaps(ValueEquality):
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

    def __repr__(self) -> str:
        return (f"ClusterMaps(labels={array_summary(self.labels)}, {len(self.runs)} runs, consensus="
                f"{self.consensus!r}, reference={self.reference}, votes={array_summary(self.votes)})")


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


@dataclass(eq=False)
class TagResult(ValueEquality):
    """What a tagger found in one image.

    nouns: ordered by support (most captions first). clusters: per BCC cluster, captions of all cycles.
    cluster_grid: (h, w) int final cluster map on the patch grid (None for taggers without clusters).
    image_size: (H, W) of the input image, upright. intermediates: every map of the clustering chain.
    timings: wall seconds per stage for the batch this image ran in (`batch_size` images).
    replies: the chat-model taggers' transcript. parts: the "union" tagger's per-tagger results.
    Equality is of the fields: the intermediates' votes are rounded in JSON, so a round trip with them is
    not equal.
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

    @property
    def cluster_map(self) -> np.ndarray | None:
        """(H, W) cluster map upsampled (nearest) from the patch grid to the input image's size; read-only.

        Kept between calls for as long as the grid and the size stay what they were: the key is the grid's
        bytes, a few kB, so editing or replacing either gives a fresh map."""
        if self.cluster_grid is None:
            return None
        grid = np.asarray(self.cluster_grid)
        key = (grid.shape, grid.dtype.str, grid.tobytes(), tuple(self.image_size))
        cached = self.__dict__.get("_cluster_map")
        if cached is None or cached[0] != key:
            up = upsample_nearest(grid, self.image_size)
            up.flags.writeable = False  # shared by every caller until the grid changes
            cached = (key, up)
            self.__dict__["_cluster_map"] = cached
        return cached[1]

    def __getstate__(self) -> dict[str, Any]:
        # the map is rebuilt on demand, not carried to other processes; "cluster_map": older pickles' cache
        return {k: v for k, v in self.__dict__.items() if k not in ("_cluster_map", "cluster_map")}

    def __repr__(self) -> str:
        parts = f", parts={sorted(self.parts)}" if self.parts else ""
        inter = ", intermediates=..." if self.intermediates is not None else ""
        return (f"TagResult(source={self.source!r}, image_size={tuple(self.image_size)}, tagger={self.tagger!r}, "
                f"model={self.model!r}, {len(self.nouns)} tags={short_list(self.tags)}, {len(self.clusters)} "
                f"clusters, cluster_grid={array_summary(self.cluster_grid)}{inter}{parts})")

    # ------------------------------------------------------------------------------------ serialisation
    def to_dict(self, intermediates: bool = True) -> dict[str, Any]:
        """A JSON-ready dict of the result: its own copy, so editing it leaves the result as it was."""
        d: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "source": self.source,
            "image_size": [int(v) for v in self.image_size],
            "tagger": self.tagger,
            "model": self.model,
            "meaningless": self.meaningless,
            "tags": self.tags,
            # field by field: vars() would hand out the live __dict__ (and any attribute set on it)
            "nouns": [{f.name: copy.deepcopy(getattr(n, f.name)) for f in fields(n)} for n in self.nouns],
            "clusters": [{f.name: copy.deepcopy(getattr(c, f.name)) for f in fields(c)} for c in self.clusters],
            "cycles_run": self.cycles_run,
            "cluster_grid": None if self.cluster_grid is None else np.asarray(self.cluster_grid).tolist(),
            "timings": copy.deepcopy(self.timings),
            "batch_size": self.batch_size,
            "notes": list(self.notes),
            "replies": copy.deepcopy(self.replies),
            "parts": {k: v.to_dict(intermediates=False) for k, v in self.parts.items()},
        }
        if intermediates and self.intermediates is not None:
            m = self.intermediates
            d["intermediates"] = {
                "runs": [r.tolist() for r in m.runs], "run_keys": [list(k) for k in m.run_keys],
                "reference": m.reference, "aligned": [a.tolist() for a in m.aligned],
                "votes": np.round(m.votes, 6).tolist(), "crf": m.crf.tolist(), "filtered": m.filtered.tolist(),
                "filter_passes": m.filter_passes, "timings": copy.deepcopy(m.timings), "consensus": m.consensus,
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
        """The TagResult a `to_dict` / `save` JSON describes, sharing nothing with `d`; ValueError with one
        line for anything else. Fields this selfseg does not know (a newer one's, same schema) are ignored."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a selfseg tag result (a JSON object), got {type(d).__name__}")
        if "segmenter" in d and "tagger" not in d:
            raise ValueError("expected a selfseg tag result, got a segmentation (read it with "
                             "selfseg.Segmentation.from_json; its tags are under 'tags')")
        check_schema(d, "tag result", SCHEMA_VERSION)
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
                filter_passes=m["filter_passes"], timings=copy.deepcopy(m["timings"]),
                consensus=m.get("consensus", "chain"),
                consensus_labels=arr(m["consensus_labels"]) if "consensus_labels" in m else None,
                merge_heights=np.asarray(m["merge_heights"]) if "merge_heights" in m else None,
                lifetimes=np.asarray(m["lifetimes"]) if "lifetimes" in m else None,
            )
        return cls(
            source=d["source"], image_size=tuple(d["image_size"]), tagger=d["tagger"], model=d["model"],
            nouns=[NounSupport(**known_fields(NounSupport, n)) for n in d["nouns"]],
            clusters=[ClusterCaptions(**known_fields(ClusterCaptions, c)) for c in d["clusters"]],
            cycles_run=d["cycles_run"], cluster_grid=grid, intermediates=inter, timings=copy.deepcopy(d["timings"]),
            batch_size=d["batch_size"], meaningless=d["meaningless"], notes=list(d.get("notes", [])),
            replies=copy.deepcopy(d.get("replies", [])),
            parts={k: cls._from_fields(v) for k, v in d.get("parts", {}).items()},
        )

    @classmethod
    def from_json(cls, text: str | bytes | Path) -> TagResult:
        """From JSON text (str or UTF-8 bytes) or a file (a `<stem>.json` that `save` or `selfseg tag` wrote);
        ValueError, one line, when it cannot be read or is not JSON."""
        return cls.from_dict(read_json_result(text, "tag result"))


def read_json_result(source: str | bytes | Path, what: str) -> Any:
    """The parsed JSON of text (a str starting with "{", or "[" when no such file exists), of UTF-8 bytes or
    of a file; ValueError in one line naming the file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        try:
            source = bytes(source).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"the bytes: not a selfseg {what} (not UTF-8 text: {exc.reason})") from None
        where, text = "the bytes", source
    elif not isinstance(source, (str, Path)):
        raise ValueError(f"expected JSON text, bytes or a path to read a selfseg {what} from, got "
                         f"{type(source).__name__}")
    else:
        where, text = "the text", source
        head = str(source).lstrip()[:1]
        if isinstance(source, Path) or not (head == "{" or (head == "[" and not _is_file(source))):
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


def _is_file(name: str) -> bool:
    try:
        return Path(name).is_file()
    except (OSError, ValueError):  # JSON text is no valid path: too long, a NUL byte
        return False


def nearest_rows(out: int, n: int) -> np.ndarray:
    """The source index of each of `out` cells resized from `n` by nearest neighbour: floor(i * n / out), the
    rule every map selfseg brings to a photo's size follows (label PNGs, exports, scoring)."""
    return (np.arange(out) * n) // out


def upsample_nearest(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of an (h, w) label grid to (H, W); uint8 when labels fit."""
    h, w = grid.shape
    rows, cols = nearest_rows(size[0], h), nearest_rows(size[1], w)
    dtype = np.uint8 if grid.max(initial=0) < 256 else np.int32
    return grid.astype(dtype).take(rows, axis=0).take(cols, axis=1)  # two 1-D gathers: half a 2-D index's time


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
