"""mbunet library: model files, engines, video pipeline, power and telemetry."""
import os

# OpenMP worker threads (numba's `cpu` engine, torch) spin while idle by default; in a pipeline where decode,
# overlay and encode threads share the cores, spinning steals their time (measured on 2 loaded cores: the cpu
# engine at 84 ms/frame from the main thread vs 23 ms with passive waiting). Set before any OpenMP runtime starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Public API, imported on first use so `import mbunet` stays cheap (no cv2/numba/torch until needed).
_API = {
    "load_model": "modelfile", "create_engine": "engines.base", "list_engines": "engines.base",
    "choose_engine": "engines.base", "load_config": "config", "run": "session", "MbunetError": "errors",
    "Segmenter": "api", "stream": "api", "frames": "api",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'mbunet' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
