"""The bundled sample clip (package data, found through importlib.resources)."""
