"""The command-line reference, ``docs/CLI.md``, written from the parser itself: ``python -m visionlab.cli.docs``.

Every command and option of ``visionlab`` with its value (metavar, choices, type, how many), default and help
text, read from :func:`visionlab.cli.build_parser`'s actions rather than from argparse's ``--help`` layout, so the
page is the same on every Python version. ``tests/cli/test_docs.py`` regenerates it and compares it with the
committed file: a flag, default or help text changed without the page fails the suite.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

__all__ = ["cli_reference"]

_HEADER = (
    "# Command-line reference\n\n"
    "Generated from the parser by `python -m visionlab.cli.docs > docs/CLI.md` (do not edit by hand); "
    "`visionlab COMMAND --help` prints the same options.\n"
)


def _cell(text: object) -> str:
    """``text`` in one Markdown table cell: pipes escaped, newlines as spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(action: argparse.Action) -> str:
    """What an option takes: nothing for a switch, else its choices or metavar, type and count."""
    if action.nargs == 0:
        return ""
    if action.choices is not None:
        name = "{" + ",".join(str(c) for c in action.choices) + "}"
    else:
        name = action.metavar or (action.dest if not action.option_strings else action.dest.upper())
    if action.type is not None:
        name += f" ({getattr(action.type, '__name__', action.type)})"
    alone = f" (alone: {action.const})" if action.option_strings else ""  # a flag given without its value
    counts = {"?": f"[{name}]{alone}", "*": f"[{name} ...]", "+": f"{name} [{name} ...]"}
    return counts.get(str(action.nargs), name)


def _row(action: argparse.Action) -> str:
    """One table row: the option's names, value, default (or *required*) and help."""
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.metavar or action.dest}`"
    # a positional's own `required` depends on the Python version for nargs="*": its count decides here
    required = action.required if action.option_strings else action.nargs not in ("?", "*")
    default = "*required*" if required else "" if action.default is None else f"`{action.default}`"
    return f"| {names} | {_cell(_value(action))} | {_cell(default)} | {_cell(action.help or '')} |"


def _groups(parser: argparse.ArgumentParser) -> Iterator[tuple[str, list[argparse.Action]]]:
    """``(title, actions)`` of each argument group with options, ``-h`` and sub-commands left out; the two default
    groups get fixed titles (their argparse titles differ between Python versions)."""
    for group in parser._action_groups:
        actions = [
            a for a in group._group_actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
        ]
        title = {id(parser._positionals): "arguments", id(parser._optionals): "options"}.get(id(group), group.title)
        if actions:
            yield str(title), actions


def _commands(parser: argparse.ArgumentParser) -> tuple[argparse._SubParsersAction, dict[str, str]] | None:
    """The parser's sub-command action and each command's one-line help, or None for a leaf command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action, {a.dest: str(a.help) for a in action._choices_actions}
    return None


def _section(parser: argparse.ArgumentParser, name: str, summary: str) -> Iterator[str]:
    """The Markdown of one command and, recursively, of its sub-commands."""
    yield f"\n## `{name}`\n"
    for line in (summary, parser.description):
        if line:
            yield f"\n{line}\n"
    for title, actions in _groups(parser):
        yield f"\n**{title}**\n\n| option | value | default | help |\n|---|---|---|---|\n"
        yield "".join(_row(a) + "\n" for a in actions)
    found = _commands(parser)
    if found is not None:
        action, helps = found
        required = "one is required" if action.required else "optional"
        yield f"\nCommands ({required}; stored as `{action.dest}`): {', '.join(f'`{c}`' for c in action.choices)}\n"
        for command, sub in action.choices.items():
            yield from _section(sub, f"{name} {command}", helps.get(command, ""))


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The Markdown reference of ``parser`` (default: ``visionlab``'s, :func:`visionlab.cli.build_parser`)."""
    if parser is None:
        from visionlab.cli import build_parser

        parser = build_parser()
    return _HEADER + "".join(_section(parser, parser.prog, ""))


if __name__ == "__main__":
    print(cli_reference(), end="")
