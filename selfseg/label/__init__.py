"""Labelling a folder of images into a training dataset: one vocabulary for the whole dataset
(`vocabulary`). Heavy dependencies (WordNet, spaCy, the label mappers) load inside the functions that use
them, so importing this package stays cheap."""
from __future__ import annotations
