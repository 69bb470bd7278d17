"""Every command's help, as ``kustos ... --help`` prints it: nothing lost to rich markup, nothing missing.

Typer renders help text as rich markup, so a help string with ``[word]`` in it
(``[env SOPS_AGE_RECIPIENTS]``, ``[key=]path``) silently loses that part
unless the bracket is escaped (``\\[``). This walks the whole command tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from rich.text import Text
from typer.testing import CliRunner

from kustos.cli.main import app


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


_ALL = list(_commands(typer.main.get_command(app)))
_VISIBLE = [(path, command) for path, command in _ALL if path and not command.hidden]


def _texts(command: Any) -> Iterator[tuple[str, str]]:
    if command.help:
        yield "the command's help", command.help
    for param in command.params:
        if getattr(param, "help", None):
            yield f"{param.opts[0]}'s help", param.help


@pytest.mark.parametrize("path", [" ".join(path) or "kustos" for path, _ in _ALL])
def test_no_help_text_is_eaten_by_markup(path: str) -> None:
    command = dict((" ".join(p) or "kustos", c) for p, c in _ALL)[path]
    eaten = [
        f"{where} shows {shown!r}"
        for where, text in _texts(command)
        if (shown := Text.from_markup(text).plain) != text.replace("\\[", "[")
    ]
    assert eaten == [], f"kustos {path}"


def test_every_visible_command_says_what_it_does() -> None:
    missing = [" ".join(path) for path, command in _VISIBLE if not (command.help or "").strip()]
    assert missing == []


def test_help_shows_escaped_brackets(cli_runner: CliRunner) -> None:
    shown = cli_runner.invoke(app, ["encrypt", "--help"])
    assert shown.exit_code == 0, shown.output
    assert "SOPS_AGE_RECIPIENTS" in shown.stdout
    sealed = cli_runner.invoke(app, ["seal", "--help"])
    assert "[key=]path" in sealed.stdout


_NO_DATA = {
    "seal keys cert": "prints a PEM certificate, as kubeseal --fetch-cert does",
    "agent": "a long-running process",
    "csi-provider": "a long-running process",
    "injector": "a long-running process",
    "kms-plugin": "a long-running process",
}


def test_every_command_that_talks_to_a_server_takes_output_json() -> None:
    """Vault's habit: every data command answers ``-o json`` (``-format=json``)."""
    lacking = []
    for path, command in _VISIBLE:
        options = {opt for param in command.params for opt in getattr(param, "opts", ())}
        if "--address" in options and " ".join(path) not in _NO_DATA and "--output" not in options:
            lacking.append(" ".join(path))
    assert lacking == []


@pytest.mark.parametrize("path", sorted(_NO_DATA))
def test_the_exceptions_are_real_commands(path: str) -> None:
    assert path in {" ".join(p) for p, _ in _VISIBLE}
