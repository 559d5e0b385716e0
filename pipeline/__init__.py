"""mbunet library: model files, engines, video pipeline, power and telemetry."""
import os

# How idle OpenMP worker threads (numba's `cpu` engine, torch) wait; read once, when an OpenMP runtime starts, and
# only set where the user has not. libgomp's own default spins 300,000 rounds before sleeping: in a pipeline where
# decode, overlay and encode threads share the cores, that spinning steals their time (2 loaded cores: the cpu
# engine at 84 ms/frame from the main thread vs 23 ms waiting passively). Sleeping at once (PASSIVE alone) costs the
# other way: a frame of the shipped model is ~30 parallel regions, and a sleeping worker takes tens of microseconds
# to wake for each one. GOMP_SPINCOUNT (libgomp's override of the policy's spin) keeps the worker spinning ~0.1 ms,
# longer than the gap between two layers and far shorter than the gap between two frames at camera rates: on 2
# cores, 2 threads back to back 4.3 ms a frame against 5.2-7.0 passive, the same CPU time per frame when paced at
# 30 FPS or beside a busy loop (docs/benchmarks.md, 2026-12-06).
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "5000"}
for _name, _value in OPENMP_DEFAULTS.items():
    os.environ.setdefault(_name, _value)
del _name, _value

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
