"""The root ``kustos`` command: wires every area's commands into one Typer app.

Areas register themselves through ``register(app)`` in their own module
(``kustos.cli.<area>``), so this file only lists them in :data:`AREAS`.
``main()`` is the console-script entry point. To start fast, it imports only
the area that owns the command being run (``kustos decrypt`` never loads the
server or the operator); ``kustos --help`` and unknown commands load every
area. ``app`` (every area) is built on first access, for tests and embedders.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Mapping
from typing import Final

import typer

from kustos import __version__

__all__ = ["AREAS", "COMMAND_AREAS", "app", "build_app", "main"]

AREAS: Final = (
    "server",
    "operator",
    "kv",
    "auth",
    "token",
    "lease",
    "policy",
    "audit",
    "seal",
    "files",
    "transit",
    "kmsplugin",
    "cluster",
    "generic",
    "injector",
    "agent",
    "csi",
)
"""Every CLI area module under ``kustos.cli``, in the order their commands are listed."""

COMMAND_AREAS: Final[Mapping[str, str]] = {
    "server": "server",
    "operator": "operator",
    "kv": "kv",
    "login": "auth",
    "auth": "auth",
    "token": "token",
    "lease": "lease",
    "policy": "policy",
    "audit": "audit",
    "seal": "seal",
    "encrypt": "files",
    "decrypt": "files",
    "edit": "files",
    "set": "files",
    "unset": "files",
    "rotate": "files",
    "updatekeys": "files",
    "exec-env": "files",
    "exec-file": "files",
    "helm": "files",
    "git": "files",
    "transit": "transit",
    "kms-plugin": "kmsplugin",
    "cluster": "cluster",
    "write": "generic",
    "read": "generic",
    "list": "generic",
    "delete": "generic",
    "injector": "injector",
    "agent": "agent",
    "csi-provider": "csi",
}
"""Top-level command -> the area that registers it (a fast path only: a command
missing here still works, by loading every area)."""

_HELP: Final = (
    "Kustos: secrets management for Kubernetes.\n\n"
    "Start a dev server with `kustos server --dev`, then `kustos kv put secret/app password=...`."
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kustos {__version__}")
        raise typer.Exit()


def build_app(areas: Iterable[str] = AREAS) -> typer.Typer:
    """A root app with the commands of ``areas`` registered."""
    root = typer.Typer(
        name="kustos",
        help=_HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @root.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        """Kustos: secrets management for Kubernetes."""

    for area in areas:
        importlib.import_module(f"kustos.cli.{area}").register(root)
    return root


def _areas_for(argv: list[str]) -> tuple[str, ...]:
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    area = COMMAND_AREAS.get(command or "")
    return (area,) if area is not None else AREAS


app: typer.Typer
"""The root app with every area (built on first access, see ``__getattr__``)."""

_app: typer.Typer | None = None


def __getattr__(name: str) -> typer.Typer:
    global _app
    if name == "app":
        if _app is None:
            _app = build_app()
        return _app
    raise AttributeError(name)


def main() -> None:
    """Console-script entry point."""
    build_app(_areas_for(sys.argv[1:]))(prog_name="kustos")
