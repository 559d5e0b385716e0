"""`mbunet` console command: one subcommand per module app/cmd_<name>.py.

Each command module defines `HELP` (one line), `add_arguments(parser)` and `main(args) -> int`. Modules are
imported when the parser is built, so they must keep heavy imports (torch, numba, cv2) inside `main`.
Any MbunetError, and a missing PyTorch (training, export), becomes one line on stderr and exit status 2; other
exceptions keep their traceback (bugs).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from mbunet.errors import MbunetError

COMMANDS = ("run", "batch", "bench", "power", "train", "eval", "sweep", "cost", "models", "export", "build-kernels",
            "doctor")


def _command_module(name: str):
    return importlib.import_module(f"mbunet.app.cmd_{name.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mbunet", description="Masked binary U-Net video segmentation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = _command_module(name)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def quiet_video_libraries() -> None:
    """OpenCV's warnings and FFmpeg's log lines would print before our own one-line error, which already says
    what failed; a user who wants them sets these variables (e.g. OPENCV_FFMPEG_LOGLEVEL=32) before running."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET: corrupt frames are counted in telemetry


def main(argv: list[str] | None = None) -> int:
    quiet_video_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    try:
        return int(args._main(args) or 0)
    except MbunetError as e:
        print(f"mbunet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mbunet {args.command}: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:
        if e.name != "torch":  # any other missing module is a broken install: keep the traceback
            raise
        print(f"mbunet {args.command}: error: needs PyTorch, which is not installed: pip install 'mbunet[torch]' "
              f"(or a CUDA build from pytorch.org)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
