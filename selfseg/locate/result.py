"""Typed detections: what a locator returns and a mask model consumes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detections:
    """Boxes found in one image.

    boxes: (N, 4) float32, xyxy in pixels of the image given to the locator.
    scores: (N,) float32 detector confidence in [0, 1].
    labels: N strings, each one of the tags the locator was prompted with (never a merged phrase).
    passes: forward passes the locator needed (prompt chunks).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: list[str]
    passes: int = 0
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.labels = list(self.labels)
        n = len(self.boxes)
        if len(self.scores) != n or len(self.labels) != n:
            raise ValueError(f"expected {n} scores and labels for {n} boxes, got {len(self.scores)} and "
                             f"{len(self.labels)}")

    @classmethod
    def empty(cls, passes: int = 0) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), [], passes)

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index) -> Detections:
        """Boolean mask or integer index array -> a new Detections."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return Detections(self.boxes[idx], self.scores[idx], [self.labels[i] for i in idx], self.passes,
                          list(self.notes))
