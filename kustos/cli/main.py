"""The root ``kustos`` command: wires every area's commands into one Typer app.

Areas register themselves through ``register(app)`` in their own module, so
this file only lists them. ``main()`` is the console-script entry point.
"""

from __future__ import annotations

import typer

from kustos import __version__
from kustos.cli import audit, auth, files, kv, operator, policy, seal, server, token

__all__ = ["app", "main"]

app = typer.Typer(
    name="kustos",
    help=(
        "Kustos: secrets management for Kubernetes.\n\n"
        "Start a dev server with `kustos server --dev`, then `kustos kv put secret/app password=...`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_AREAS = (server, operator, kv, auth, token, policy, audit, seal, files)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kustos {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Kustos: secrets management for Kubernetes."""


for _area in _AREAS:
    _area.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
