"""`mbunet doctor`: what this machine can run, and why the rest cannot."""
from __future__ import annotations

import argparse

HELP = ("report libraries, video backends (which sources GStreamer reads, and why), CUDA devices, nvcc, engines and "
        "power sources")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sysfs-root", help="where /sys is mounted (power sources); default /sys or $MBUNET_SYSFS_ROOT")


def main(args: argparse.Namespace) -> int:
    from mbunet.doctor import engine_checks, environment_checks, power_check, video_io_checks
    from mbunet.engines.base import choose_engine
    from mbunet.errors import EngineUnavailable

    sections = [("environment", environment_checks()), ("video I/O", video_io_checks()), ("engines", engine_checks()),
                ("power", [power_check(args.sysfs_root)])]
    for title, checks in sections:
        print(f"{title}:")
        for c in checks:
            print(f"  [{'ok' if c.ok else '--'}] {c.name:<12} {c.detail}")
    try:
        choice = choose_engine()
        print(f"--engine auto picks: {choice.name} ({choice.reason})")
    except EngineUnavailable as e:
        print(f"--engine auto: {e}")
    return 0
