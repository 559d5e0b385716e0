"""Numba-CUDA kernels for the bit network (engine `cuda`): arrays in, device arrays out, one stream.

- bitconv: input conv on uint8 RGB, 3x3 binary/masked conv, 2x2/s2 transposed conv (threshold + bit packing fused)
- packed:  2x2 max-pool as OR of words, channel concat of packed words
- head:    1x1 output conv -> int32 logits -> uint8 class mask

Every kernel also runs in Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1): no warp intrinsics, popc on uint32
words only, and device helpers inlined at the IR level (`inline="always"`) so `cuda.compile_ptx` can build every
kernel on a machine without a GPU. Importing this package does not import numba; the modules do.
Kernels are jitted with cache=True: numba keeps the compiled code on disk (beside these sources, or under
NUMBA_CACHE_DIR), per GPU architecture, so a restart (a drone's boot) loads the kernels instead of compiling them.
"""
from __future__ import annotations

MODULES = ("bitconv", "packed", "head")


def kernel_signatures() -> dict:
    """Every kernel of the package -> its explicit signature (for ahead-of-time PTX checks)."""
    import importlib

    out: dict = {}
    for name in MODULES:
        out.update(importlib.import_module(f"{__name__}.{name}").SIGNATURES)
    return out
