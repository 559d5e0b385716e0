"""`mbunet power`: which power source is readable here, and its rails and total, like a small tegrastats."""
from __future__ import annotations

import argparse
import json

HELP = "show the power source (NVML, Jetson INA3221 rails, CPU RAPL) and read rails and total W"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=int, default=1, metavar="N", help="read once per second for N seconds "
                   "(default 1: a single read)")
    p.add_argument("--json", action="store_true", help='print only JSON {"source", "watts", "rails"}, one per read')
    p.add_argument("--sysfs-root", metavar="DIR", help="sysfs tree to read (default $MBUNET_SYSFS_ROOT or /sys)")
    p.add_argument("--gpu", type=int, default=0, metavar="INDEX", help="NVML GPU index (default 0)")


def main(args: argparse.Namespace) -> int:
    from mbunet.errors import ConfigError
    from mbunet.power import open_power_meter, watch

    if args.seconds < 1:
        raise ConfigError(f"--seconds must be at least 1, got {args.seconds}")
    with open_power_meter(args.sysfs_root, gpu_index=args.gpu) as meter:
        if not args.json:
            print(f"source: {meter.source}")
        for reading in watch(meter, args.seconds):
            print(json.dumps(reading.to_json()) if args.json else reading.line(), flush=True)
    return 0
