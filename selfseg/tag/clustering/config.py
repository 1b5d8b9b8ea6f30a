"""The clustering chain's settings: the config file's `clustering` section (read by the bcc tagger)."""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

from ...errors import ConfigError, check, choices

#: Costs of the Hungarian alignment of k-means runs (clustering.align_cost).
ALIGN_COSTS = ("iou", "mismatch")
#: How the k-means runs become one map before the CRF (clustering.consensus).
CONSENSUS_METHODS = ("coassoc", "chain")
#: The settings only one consensus reads: one set under the other would change nothing.
READ_BY = {"chain": ("ks", "pos_dim", "align_cost"), "coassoc": ("coassoc_ks", "coassoc_runs", "coassoc_pos_dim")}


@dataclass
class ClusteringConfig:
    # Square input sizes the BLIP encoder sees; 16-px patches give 24x24 and 32x32 grids.
    scales: list[int] = field(default_factory=lambda: [384, 512])
    # How the k-means runs become one map: "coassoc" (the runs at coassoc_ks, cut where their co-association
    # tree is most stable; finds the number of clusters) or "chain" (the paper: the runs at ks aligned to one
    # reference run, then voted).
    consensus: str = "coassoc"
    # k of the k-means runs of consensus "chain", each run at every scale. The paper: {2, 8}; the released
    # code: 2..8.
    ks: list[int] = field(default_factory=lambda: [2, 8])
    # k of the over-segmenting k-means runs of consensus "coassoc", each at every scale (a k not below a
    # scale's patch count is skipped there).
    coassoc_ks: list[int] = field(default_factory=lambda: [16, 20, 24, 28, 32])
    # Runs consensus "coassoc" needs at least: the coassoc_ks runs at every scale are repeated, each time with
    # fresh seeds, until there are this many (fewer runs let chance splits of a region look like regions).
    coassoc_runs: int = 10
    # Dimensions of the 2-D sin-cos positional encoding concatenated to each patch feature of the "chain" runs
    # (0: none).
    pos_dim: int = 256
    # The same for the "coassoc" runs (0: none). Position would cut a uniform region into the same tiles in
    # every over-segmenting run, and agreement is what the consensus counts; the CRF and mode filter keep
    # the clusters spatially coherent instead.
    coassoc_pos_dim: int = 0
    # k-means++ restarts per run; the lowest inertia wins (sklearn's default for k-means++ is 1).
    kmeans_n_init: int = 1
    # Lloyd iterations at most per run.
    kmeans_max_iter: int = 300
    # Stop when the centre shift is below this times the mean feature variance (sklearn's rule).
    kmeans_tol: float = 1e-4
    # Cost for the Hungarian alignment of runs: "iou" (the paper, Eq. 10) or "mismatch" (released code:
    # number of patches on which two clusters disagree).
    align_cost: str = "iou"
    # Smoothness weight of the mean-field CRF (Gaussian spatial kernel, Potts compatibility, crfseg semantics).
    crf_weight: float = 6.0
    # Bandwidth (in patches) of the Gaussian smoothness kernel.
    crf_theta: float = 0.8
    # Mean-field iterations (crfseg's default).
    crf_iters: int = 5
    # Taps of the separable Gaussian filter (crfseg's default).
    crf_filter_size: int = 11
    # Window of the majority (mode) filter (odd).
    mode_filter_size: int = 3
    # Mode-filter passes at most (0: off); it stops earlier at a fixed point.
    mode_filter_passes: int = 8

    def __post_init__(self) -> None:
        check(bool(self.scales) and all(s >= 16 and s % 16 == 0 for s in self.scales), "scales",
              "a non-empty list of multiples of 16", self.scales)
        check(bool(self.ks) and all(k >= 1 for k in self.ks), "ks", "a non-empty list of integers >= 1", self.ks)
        check(self.consensus in CONSENSUS_METHODS, "consensus", choices(CONSENSUS_METHODS), self.consensus)
        check(bool(self.coassoc_ks) and all(k >= 2 for k in self.coassoc_ks), "coassoc_ks",
              "a non-empty list of integers >= 2", self.coassoc_ks)
        check(self.coassoc_runs >= 1, "coassoc_runs", "an integer >= 1", self.coassoc_runs)
        patches = max((s // 16) ** 2 for s in self.scales) if self.scales else 0
        check(self.consensus != "coassoc" or not self.coassoc_ks or min(self.coassoc_ks) < patches, "coassoc_ks",
              f"a k below the largest scale's patch count ({patches}), or consensus: chain", self.coassoc_ks)
        check(self.align_cost in ALIGN_COSTS, "align_cost", choices(ALIGN_COSTS), self.align_cost)
        check(self.mode_filter_size >= 1 and self.mode_filter_size % 2 == 1, "mode_filter_size", "an odd size >= 1",
              self.mode_filter_size)
        check(self.mode_filter_passes >= 0, "mode_filter_passes", "an integer >= 0", self.mode_filter_passes)
        check(self.crf_filter_size >= 1 and self.crf_filter_size % 2 == 1, "crf_filter_size", "an odd size >= 1",
              self.crf_filter_size)
        check(self.crf_iters >= 0 and self.crf_theta > 0, "crf_iters / crf_theta", "crf_iters >= 0 and crf_theta > 0",
              (self.crf_iters, self.crf_theta))
        check(self.kmeans_n_init >= 1 and self.kmeans_max_iter >= 1 and self.kmeans_tol >= 0,
              "kmeans_n_init / kmeans_max_iter / kmeans_tol", "n_init >= 1, max_iter >= 1, tol >= 0",
              (self.kmeans_n_init, self.kmeans_max_iter, self.kmeans_tol))
        check(self.pos_dim >= 0 and self.pos_dim % 4 == 0, "pos_dim", "a multiple of 4 (0: none)", self.pos_dim)
        check(self.coassoc_pos_dim >= 0 and self.coassoc_pos_dim % 4 == 0, "coassoc_pos_dim",
              "a multiple of 4 (0: none)", self.coassoc_pos_dim)
        self._check_read()

    def _check_read(self) -> None:
        """A field only the other consensus reads, set away from its default, is a mistake the run would hide:
        the clusters come out the same whatever it says. A default value passes, so a file may list every
        field, and a file that leaves the other consensus's fields alone may switch the consensus."""
        other = next(c for c in READ_BY if c != self.consensus)
        defaults = {f.name: f.default_factory() if f.default_factory is not MISSING else f.default
                    for f in fields(ClusteringConfig)}
        unread = [k for k in READ_BY[other] if _same(getattr(self, k)) != _same(defaults[k])]
        if unread:
            raise ConfigError(
                f"{', '.join(unread)}: read by consensus {other!r} only, and consensus is {self.consensus!r}: "
                f"set consensus: {other} in the same section, or leave {' and '.join(unread)} out")


def _same(value: object) -> object:
    """A list and a tuple or range of the same numbers are one setting (`ks=range(2, 9)`)."""
    return list(value) if isinstance(value, (list, tuple, range)) else value
