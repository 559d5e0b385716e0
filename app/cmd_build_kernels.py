"""`mbunet build-kernels`: compile the bmma CUDA C++ library (cached) and optionally time the MMA flavours."""
from __future__ import annotations

import argparse
import json
import time

HELP = "build the bmma Tensor Core library with nvcc (cached per source hash); --mma-bench times MMA flavours"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", action="append", metavar="SM",
                   help="target GPU arch, repeatable or comma-separated (default: sm_75,80,86,87,89,90 + PTX)")
    p.add_argument("--force", action="store_true", help="rebuild even when the cached library is current")
    p.add_argument("--prebuilt", action="store_true",
                   help="build the library shipped in the package for this nvcc's CUDA major (CI, before the wheel)")
    p.add_argument("--nvcc", help="the nvcc for --prebuilt (default: $NVCC, PATH, $CUDA_HOME/bin)")
    p.add_argument("--mma-bench", action="store_true",
                   help="after building, time b1 AND/XOR, int8 and fp16 MMA loops on GPU 0")
    p.add_argument("--iters", type=int, default=20000, help="MMAs per warp and chain in --mma-bench")
    p.add_argument("--json", action="store_true", help="print the --mma-bench result as JSON")


def main(args: argparse.Namespace) -> int:
    from mbunet.cudakernels.bmma.build import build

    if args.prebuilt:
        return _prebuilt(args)
    archs = [a for item in args.arch or [] for a in item.split(",") if a.strip()]
    t0 = time.perf_counter()
    path = build(archs, force=args.force)
    print(f"built or cached in {time.perf_counter() - t0:.1f} s")
    if args.mma_bench:
        from mbunet.bench import mma_bench

        result = mma_bench(args.iters, path)
        if args.json:
            print(json.dumps(result, indent=1))
        else:
            _print_bench(result)
    print(path)
    return 0


def _print_bench(result: dict) -> None:
    print(f"MMA throughput on {result['device']}, {result['iters']} iterations per warp and chain")
    for row in result["rows"]:
        if "error" in row:
            print(f"  {row['flavour']:<7} unavailable: {row['error']}")
        else:
            print(f"  {row['flavour']:<7} {row['tops']:9.1f} TOPS  ({row['ms']:.2f} ms)")


def _prebuilt(args: argparse.Namespace) -> int:
    from mbunet.cudakernels.bmma.build import find_nvcc
    from mbunet.cudakernels.bmma.prebuilt import build_prebuilt
    from mbunet.errors import ConfigError

    if args.arch or args.mma_bench:
        raise ConfigError("--prebuilt builds the shipped arch list and runs nothing: drop --arch/--mma-bench")
    t0 = time.perf_counter()
    lib, built = build_prebuilt(args.nvcc or find_nvcc(), force=args.force)
    print(f"{'built' if built else 'up to date'}: {lib.name} ({', '.join(lib.archs)} + {lib.ptx} PTX, "
          f"{lib.path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    print(lib.path)
    return 0
