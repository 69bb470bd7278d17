"""``kustos completion bash|zsh|fish``: print the shell completion script.

``eval "$(kustos completion bash)"`` in ``~/.bashrc`` (or ``source <(kustos
completion zsh)``, ``kustos completion fish | source``) completes commands,
options and choices; ``kustos --install-completion`` installs it for the
current shell instead. The scripts call ``kustos`` back with
``_KUSTOS_COMPLETE`` set, which :mod:`kustos.cli.main` answers.
"""

from __future__ import annotations

import enum
from typing import Annotated

import typer
from typer._completion_shared import get_completion_script

__all__ = ["register"]


class Shell(enum.StrEnum):
    """The shells a completion script is written for."""

    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion(
    shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.", case_sensitive=False)],
) -> None:
    """Print the completion script for SHELL, e.g. eval "$(kustos completion bash)"."""
    typer.echo(
        get_completion_script(
            prog_name="kustos", complete_var="_KUSTOS_COMPLETE", shell=shell.value
        )
    )


def register(app: typer.Typer) -> None:
    """Add ``kustos completion`` to the root app."""
    app.command("completion")(completion)
