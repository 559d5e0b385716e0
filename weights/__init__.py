"""The shipped models (package data, found through importlib.resources)."""
