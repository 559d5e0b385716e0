"""docs/cli.md is the generator's output (mbunet.app.cli_docs), and the generator covers every option."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from mbunet.app.cli import build_parser
from mbunet.app.cli_docs import REGENERATE, command_section, render, subcommands

CLI_MD = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_docs_cli_md_is_up_to_date():
    assert CLI_MD.is_file(), f"docs/cli.md is missing: run `{REGENERATE}`"
    assert CLI_MD.read_text(encoding="utf-8") == render(), (
        f"docs/cli.md differs from the argument parser's help: regenerate it with `{REGENERATE}`")


def test_every_subcommand_and_option_is_documented():
    text = render()
    commands = subcommands(build_parser())
    assert {"run", "train", "eval", "bench"} <= set(commands)
    for name, parser in commands.items():
        assert f"## mbunet {name}\n" in text
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert f"`{option}" in text, f"mbunet {name} {option} missing from the generated docs"


def test_module_prints_the_same_text():
    out = subprocess.run([sys.executable, "-m", "mbunet.app.cli_docs"], capture_output=True, text=True,
                         check=True).stdout
    assert out == render()


def test_section_forms():
    p = argparse.ArgumentParser(prog="mbunet demo", description="do a thing")
    p.add_argument("src", help="where from")
    p.add_argument("outs", nargs="*", metavar="OUT", help="where to")
    p.add_argument("--need", required=True, metavar="DIR", help="a folder")
    p.add_argument("--mode", choices=("a", "b"), default="a", help="how")
    p.add_argument("--ci", type=float, default=0.95, help="level of the 95%% interval (default %(default)s)")
    p.add_argument("--ref", metavar="NAME|PATH", help="x <y> *z* | w")
    p.add_argument("--flag", action="store_true", help="on")
    text = "\n".join(command_section("demo", p))
    assert "Do a thing." in text
    assert "mbunet demo --need DIR [options] src [OUT ...]" in text
    assert "| `--need DIR` | a folder; required |" in text
    assert "| `--mode {a,b}` | how; default: `a` |" in text
    assert "| `--ci CI` | level of the 95% interval (default 0.95) |" in text
    assert "| `--ref NAME\\|PATH` | x \\<y> \\*z\\* \\| w |" in text
    assert "| `--flag` | on |" in text
