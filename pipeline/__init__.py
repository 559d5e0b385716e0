"""mbunet library: model files, engines, video pipeline, power and telemetry."""
import os

# OpenMP worker threads (numba's `cpu` engine, torch) spin while idle by default; in a pipeline where decode,
# overlay and encode threads share the cores, spinning steals their time (measured on 2 loaded cores: the cpu
# engine at 84 ms/frame from the main thread vs 23 ms with passive waiting). Set before any OpenMP runtime starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
