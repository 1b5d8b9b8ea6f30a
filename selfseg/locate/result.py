"""Typed detections: what a locator returns and a mask model consumes."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..tag.result import ValueEquality, array_summary, as_boxes, as_vector, check_schema, short_list

# The JSON layout of Detections (to_dict / from_dict).
SCHEMA_VERSION = 1


@dataclass(eq=False)
class Detections(ValueEquality):
    """Boxes found in one image.

    boxes: (N, 4) float32, xyxy in pixels of the image given to the locator.
    scores: (N,) float32 detector confidence in [0, 1].
    labels: N strings, each one of the tags the locator was prompted with (never a merged phrase).
    passes: forward passes the locator needed (prompt chunks).

    Equality compares every field, arrays by shape and values (not dtype); detections are mutable and
    unhashable.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: list[str]
    passes: int = 0
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.boxes = as_boxes(self.boxes)
        self.scores = as_vector(self.scores, None, "scores")
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

    def __repr__(self) -> str:
        return (f"Detections({len(self)} boxes={array_summary(self.boxes)}, labels={short_list(self.labels)}, "
                f"passes={self.passes}, notes={short_list(self.notes, 2)})")

    # ------------------------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, its own copy. Boxes and scores are float32 values written as JSON numbers, so
        `from_dict` gives them back exactly."""
        return {"schema": SCHEMA_VERSION, "kind": "detections", "boxes": self.boxes.tolist(),
                "scores": self.scores.tolist(), "labels": list(self.labels), "passes": int(self.passes),
                "notes": list(self.notes)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Detections:
        """The Detections a `to_dict` describes, sharing nothing with `d`; ValueError with one line for
        anything else. Fields this selfseg does not know (a newer one's, same schema) are ignored."""
        if not isinstance(d, dict):
            raise ValueError(f"expected selfseg detections (a JSON object), got {type(d).__name__}")
        for key, what in (("segmenter", "a segmentation"), ("tagger", "a tag result")):
            if key in d and "boxes" not in d:
                raise ValueError(f"expected selfseg detections, got {what}")
        check_schema(d, "detections", SCHEMA_VERSION)
        try:
            return cls(boxes=d["boxes"], scores=d["scores"], labels=list(d["labels"]), passes=int(d.get("passes", 0)),
                       notes=list(d.get("notes", [])))
        except KeyError as exc:
            raise ValueError(f"expected selfseg detections, missing field {exc}") from None
        except TypeError as exc:
            raise ValueError(f"expected selfseg detections, malformed field ({exc})") from None

    @classmethod
    def from_json(cls, source: str | bytes | Path) -> Detections:
        """From JSON text (str or UTF-8 bytes) or a file; ValueError, one line, when it cannot be read or is not
        JSON."""
        from ..tag.result import read_json_result

        return cls.from_dict(read_json_result(source, "detections"))
