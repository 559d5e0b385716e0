"""Run presets and training recipes (package data, found through importlib.resources)."""
