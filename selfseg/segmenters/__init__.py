"""Locate and segment: tags -> boxes -> masks, or tags -> dense maps (work in progress, see issue 3)."""
