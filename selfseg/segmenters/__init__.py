"""Locate and segment: tags -> boxes -> masks, or tags -> dense maps."""
