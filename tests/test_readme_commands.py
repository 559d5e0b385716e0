"""Every `mbunet ...` line of the README's shell examples is a command the CLI accepts as written, and the recipes
and presets it names by --config exist (a renamed option or recipe would otherwise first fail in a user's hands)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from mbunet.app.cli import build_parser
from mbunet.config import load_config as load_run_config
from mbunet.train.config import load_config as load_train_config

README = Path(__file__).resolve().parents[1] / "README.md"
RECIPE_LOADERS = {"run": load_run_config, "train": load_train_config, "sweep": load_train_config}


def readme_commands() -> list[str]:
    """The `mbunet` command lines of the README's ```sh blocks, continuations joined and comments dropped."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    commands = []
    for line in lines:
        for part in line.split("&&"):  # `python3 -m venv ... && pip install . && mbunet run --headless`
            words = shlex.split(part, comments=True)
            if words and words[0] == "mbunet":
                commands.append(shlex.join(words))
    return commands


def test_the_readme_has_commands_to_check():
    assert {c.split()[1] for c in readme_commands()} >= {"run", "bench", "batch", "train", "eval"}


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    argv = shlex.split(command)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:
        pytest.fail(f"the CLI rejects the README's `{command}` (exit {exit.code})")
    config = getattr(args, "config", None)
    if config and argv[0] in RECIPE_LOADERS:
        RECIPE_LOADERS[argv[0]](config)  # raises if neither a file nor a shipped name
