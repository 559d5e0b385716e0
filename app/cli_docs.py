"""docs/cli.md from the argument parser, so the command reference cannot drift from the code.

    python -m mbunet.app.cli_docs > docs/cli.md

Every subcommand gets its description, a synopsis, its epilog (when it has one) and one table per argument group,
all taken from `mbunet.app.cli.build_parser()`; only the introduction below is written by hand.
tests/test_cli_docs.py fails when docs/cli.md differs from this output.
"""
from __future__ import annotations

import argparse
import sys

from mbunet.app.cli import build_parser

REGENERATE = "python -m mbunet.app.cli_docs > docs/cli.md"

INTRO = f"""\
# Command-line reference

`mbunet` is one command with subcommands. This page lists every subcommand and every option, as
`mbunet <command> --help` prints them. It is generated from the argument parser (`{REGENERATE}`,
checked by `tests/test_cli_docs.py`): edit the help strings in `app/cmd_*.py`, not this file.

Conventions shared by all subcommands:

- A bad input (missing file, bad source URI, corrupt or foreign model file, unknown engine) ends the command
  with one line on stderr, `mbunet <command>: error: <what is wrong>`, and exit status 2; an option the parser
  rejects also exits 2, after the usage line. Ctrl-C ends a command with status 130.
- Wherever a model is asked for (`--model`, `--against`, `--init`, `--teacher`), a path to a `.safetensors` file
  and the name of a shipped model (`mbunet models`) are both accepted.
- Size options take width x height, `WxH` (for example `192x144`).
- The model file format and the maths the engines compute are described in [design.md](design.md), training in
  [training.md](training.md), measured speed and energy in [benchmarks.md](benchmarks.md).
"""


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Name -> parser of every subcommand, in the order `mbunet --help` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _cell(text: str) -> str:
    """Help text as one line of Markdown: pipes (table cells), '<' (HTML tags) and '*' (emphasis) escaped."""
    text = " ".join(str(text).split())
    for char in "|<*":
        text = text.replace(char, "\\" + char)
    return text


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest if not action.option_strings else action.dest.upper().replace("-", "_")


def _args_text(action: argparse.Action) -> str:
    """What follows the option or stands for the positional: 'N', '[SOURCE]', 'OUTPUT ...' and so on."""
    if action.nargs == 0:
        return ""
    m = _metavar(action)
    if action.nargs is None or action.nargs == 1:
        return m
    if action.nargs == "?":
        return f"[{m}]"
    if action.nargs == "*":
        return f"[{m} ...]"
    if action.nargs == "+":
        return f"{m} [{m} ...]"
    if isinstance(action.nargs, int):
        return " ".join([m] * action.nargs)
    return m


def _help_text(action: argparse.Action, prog: str) -> str:
    """The help string with argparse's %-expansion (so '95%%' reads '95%', '%(default)s' its value)."""
    if not action.help:
        return ""
    params = dict(vars(action), prog=prog)
    for name in list(params):
        if params[name] is argparse.SUPPRESS:
            del params[name]
        elif hasattr(params[name], "__name__"):
            params[name] = params[name].__name__
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(c) for c in params["choices"])
    return action.help % params


def _default_note(action: argparse.Action) -> str:
    """'default: X' for an option whose help does not already name its default."""
    if action.option_strings == [] or action.nargs == 0 or action.required:
        return ""
    default = action.default
    if default is None or default is argparse.SUPPRESS or "default" in (action.help or ""):
        return ""
    if isinstance(default, (list, tuple)):
        default = "x".join(str(v) for v in default) if action.metavar == "WxH" else ",".join(map(str, default))
    return f"default: `{default}`"


def _name(action: argparse.Action) -> str:
    """The argument as code; a pipe is escaped even there, or it would end the table cell."""
    args = _args_text(action).replace("|", "\\|")
    if not action.option_strings:
        return f"`{args}`"
    return ", ".join(f"`{opt}{' ' + args if args else ''}`" for opt in action.option_strings)


def _synopsis(name: str, parser: argparse.ArgumentParser) -> str:
    parts = [f"mbunet {name}"]
    optional = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help is argparse.SUPPRESS:
            continue
        if action.option_strings:
            if action.required:
                parts.append(f"{action.option_strings[0]} {_args_text(action)}".strip())
            else:
                optional.append(action)
    if optional:
        parts.append("[options]")
    parts += [_args_text(a) for a in parser._actions if not a.option_strings]
    return " ".join(parts)


def _group_rows(group: argparse._ArgumentGroup, prog: str) -> list[str]:
    rows = []
    for action in group._group_actions:
        if isinstance(action, argparse._HelpAction) or action.help is argparse.SUPPRESS:
            continue
        notes = [_help_text(action, prog)]
        if action.required and action.option_strings:
            notes.append("required")
        notes.append(_default_note(action))
        rows.append(f"| {_name(action)} | {_cell('; '.join(n for n in notes if n))} |")
    return rows


def _group_title(group: argparse._ArgumentGroup) -> str:
    if group.title == "positional arguments":
        return "Arguments"
    if group.title in ("options", "optional arguments"):
        return "Options"
    return f"Options: {group.title}"


def command_section(name: str, parser: argparse.ArgumentParser) -> list[str]:
    """The Markdown section of one subcommand."""
    lines = [f"## mbunet {name}", ""]
    if parser.description:
        lines += [_cell(parser.description[:1].upper() + parser.description[1:]) + ".", ""]
    lines += ["```", _synopsis(name, parser), "```", ""]
    for group in parser._action_groups:
        rows = _group_rows(group, parser.prog)
        if rows:
            lines += [f"{_group_title(group)}:", "", "| argument | meaning |", "|---|---|", *rows, ""]
    if parser.epilog:
        if issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter):
            lines += ["```", parser.epilog.strip("\n"), "```", ""]
        else:
            lines += [" ".join(parser.epilog.split()), ""]
    return lines


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole of docs/cli.md."""
    parser = parser or build_parser()
    commands = subcommands(parser)
    lines = [INTRO, "| command | what it does |", "|---|---|"]
    lines += [f"| [`mbunet {n}`](#mbunet-{n}) | {_cell(p.description or '')} |" for n, p in commands.items()]
    lines.append("")
    for name, sub in commands.items():
        lines += command_section(name, sub)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
