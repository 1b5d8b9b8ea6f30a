"""Locate: class names (or phrases) -> boxes per image."""
