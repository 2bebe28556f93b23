"""``docs/CLI.md``: the committed command-line reference is the one the parser generates today."""

from __future__ import annotations

import argparse
from pathlib import Path

from visionlab.cli.docs import cli_reference

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_cli_reference_is_up_to_date() -> None:
    """Every flag, default, metavar and help text of every command is pinned by the committed page."""
    committed = (ROOT / "docs" / "CLI.md").read_text(encoding="utf-8")
    assert cli_reference() == committed, "docs/CLI.md is stale: python -m visionlab.cli.docs > docs/CLI.md"


def test_the_reference_of_a_small_parser() -> None:
    """The formatter's layout, on a parser with every kind of option it renders."""
    parser = argparse.ArgumentParser(prog="tool", description="does things")
    parser.add_argument("files", nargs="*", help="inputs")
    parser.add_argument("extra", nargs="?", help="one more\non two lines")
    parser.add_argument("-n", "--num", type=int, default=3, help="how many | at most")
    parser.add_argument("--size", type=Size(), help="a converter without __name__")
    parser.add_argument("--mode", choices=("a", "b"), required=True)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--backend", nargs="?", const="x", metavar="B")
    sub = parser.add_subparsers(dest="cmd")
    leaf = sub.add_parser("go", help="go somewhere", description="longer text")
    sub.add_parser("stay")  # no help: no summary line
    group = leaf.add_argument_group("where")
    group.add_argument("--to", dest="target", nargs="+", type=float, default=[1.0])
    assert cli_reference(parser).split("\n", 4)[4] == (
        "## `tool`\n\ndoes things\n\n**arguments**\n\n| option | value | default | help |\n|---|---|---|---|\n"
        "| `files` | [files ...] |  | inputs |\n| `extra` | [extra] |  | one more on two lines |\n"
        "\n**options**\n\n| option | value | default | help |\n|---|---|---|---|\n"
        "| `-n`, `--num` | NUM (int) | `3` | how many \\| at most |\n"
        "| `--size` | SIZE (size in pixels) |  | a converter without __name__ |\n| `--mode` | {a,b} | *required* |  |\n"
        "| `--fast` |  | `False` |  |\n| `--backend` | [B] (alone: x) |  |  |\n\n"
        "Commands (optional; stored as `cmd`): `go`, `stay`\n\n## `tool go`\n\ngo somewhere\n\nlonger text\n\n"
        "**where**\n\n| option | value | default | help |\n|---|---|---|---|\n"
        "| `--to` | TARGET (float) [TARGET (float) ...] | `[1.0]` |  |\n\n## `tool stay`\n"
    )


class Size:
    """A type converter that is an instance, not a function: the page shows its str()."""

    def __call__(self, text: str) -> int:
        return int(text)

    def __str__(self) -> str:
        return "size in pixels"
