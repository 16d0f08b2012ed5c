"""`settle --help` texts read as prose: no sentence broken at the source's line length."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

from settlement.cli.common import unwrap_help
from settlement.cli.main import app


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from commands(sub, (*path, name))


def test_every_command_help_has_one_line_per_prose_paragraph() -> None:
    seen = 0
    for path, command in commands(typer.main.get_command(app)):
        for paragraph in (command.help or "").split("\n\n"):
            lines = paragraph.splitlines()
            is_list = any(line.lstrip().startswith(("-", "*")) for line in lines)
            assert len(lines) <= 1 or is_list, f"settle {' '.join(path)}: {paragraph!r}"
            seen += 1
    assert seen > 50  # the walk reached the whole tree


def test_help_renders_a_hard_wrapped_docstring_as_one_line() -> None:
    result = CliRunner().invoke(app, ["audit", "verify", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert "on the database with --direct, or when no key is given." in result.output
    assert "Through the API when a key is given" in result.output


def test_unwrap_keeps_lists_and_indented_blocks() -> None:
    text = """Title line.

    Prose written
    over two lines.

    - one item
    - another item

        an indented
        example
    """
    assert unwrap_help(text).split("\n\n") == [
        "Title line.",
        "Prose written over two lines.",
        "- one item\n- another item",
        "    an indented\n    example",
    ]
