"""`mbunet` console command: one subcommand per module app/cmd_<name>.py.

Each command module defines `HELP` (one line), `add_arguments(parser)` and `main(args) -> int`. Modules are
imported when the parser is built, so they must keep heavy imports (torch, numba, cv2) inside `main`.
Any MbunetError becomes one line on stderr and exit status 2; other exceptions keep their traceback (bugs).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from pipeline.errors import MbunetError

COMMANDS = ("run", "bench", "power", "train", "eval", "sweep", "cost", "models", "export", "build-kernels", "doctor")


def _command_module(name: str):
    return importlib.import_module(f"app.cmd_{name.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mbunet", description="Masked binary U-Net video segmentation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = _command_module(name)
        except ModuleNotFoundError as e:  # a command whose issue has not landed yet is simply not offered
            if e.name == f"app.cmd_{name.replace('-', '_')}":
                continue
            raise
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
