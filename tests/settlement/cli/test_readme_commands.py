"""Every `settle` command line the README shows runs as shown.

Each one names a real command and only options that command takes; the ones that are
safe to run on a fresh database (no server left running, no placeholder arguments)
are run, and must exit 0.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

from settlement.bootstrap import DatabaseUrls
from settlement.cli.main import app

README = Path(__file__).resolve().parents[3] / "README.md"
SETTLE = ".venv/bin/settle"

# Command paths the test runs for real. The others start servers or workers that do not
# return, read a secret from standard input, or carry placeholders such as `r...`.
RUNNABLE = {("audit", "verify"), ("db", "migrate"), ("keys", "new")}


def readme_settle_lines() -> list[list[str]]:
    """The arguments after `.venv/bin/settle` of every command line in a code block."""
    commands = []
    for line in README.read_text().splitlines():
        if not line.startswith("    ") or SETTLE not in line:
            continue
        words = shlex.split(line.split(SETTLE, 1)[1], comments=True)
        commands.append(words)
    return commands


def resolve(words: list[str]) -> tuple[Any, tuple[str, ...], list[str]]:
    """The command the words name, its path, and the words after the path."""
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    rest = list(words)
    while isinstance(command, TyperGroup) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        assert sub is not None, f"README names an unknown command: settle {' '.join(words)}"
        command, path = sub, [*path, rest.pop(0)]
    return command, tuple(path), rest


def test_the_readme_shows_settle_commands() -> None:
    # the extraction itself must find the commands, or every check below is empty
    paths = {resolve(words)[1] for words in readme_settle_lines()}
    assert {("audit", "verify"), ("serve",), ("worker",), ("keys", "new")} <= paths


@pytest.mark.parametrize("words", readme_settle_lines(), ids=" ".join)
def test_readme_command_names_real_options(words: list[str]) -> None:
    command, path, rest = resolve(words)
    known = {name for param in command.params for name in param.opts + param.secondary_opts}
    for word in rest:
        if word.startswith("--"):
            option = word.split("=", 1)[0]
            assert option in known, f"settle {' '.join(path)} has no option {option}"


def test_readme_commands_that_are_safe_to_run_exit_zero(
    fresh_urls: DatabaseUrls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # `keys new --out alloc.pem` writes beside the caller
    env = {"SETTLEMENT_DATABASE_URL": fresh_urls.owner, "SETTLEMENT_NETWORK": "local"}
    ran = []
    for words in readme_settle_lines():
        _, path, _ = resolve(words)
        if path not in RUNNABLE:
            continue
        result = CliRunner().invoke(app, words, env=env)
        assert result.exit_code == 0, f"settle {' '.join(words)}:\n{result.output}"
        ran.append(path)
    assert set(ran) == RUNNABLE
