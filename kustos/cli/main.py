"""The root ``kustos`` command: wires every area's commands into one Typer app.

Areas register themselves through ``register(app)`` in their own module
(``kustos.cli.<area>``), so this file only lists them in :data:`AREAS`.
``main()`` is the console-script entry point. To start fast, it imports only
the area that owns the command being run (``kustos decrypt`` never loads the
server or the operator); ``kustos --help``, unknown commands and shell
completion load every area. ``app`` (every area) is built on first access, for
tests and embedders.

The root command (:class:`_RootGroup`) does two things for every command, so
that no area has to: it accepts Vault's single-dash spelling of any long
option (``-field=password``, ``-format=json``, ``-mount=secret``; see
:func:`normalize_flags`), and it prints usage errors as plain text (``Usage``,
``Error: ...``) that stays readable in a log or a narrow terminal.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import typer
from typer.core import TyperGroup

from kustos import __version__

__all__ = ["AREAS", "COMMAND_AREAS", "app", "build_app", "main", "normalize_flags"]

AREAS: Final = (
    "server",
    "operator",
    "controller",
    "kv",
    "auth",
    "token",
    "lease",
    "policy",
    "audit",
    "seal",
    "files",
    "lint",
    "secrets",
    "transit",
    "kmsplugin",
    "cluster",
    "generic",
    "injector",
    "agent",
    "csi",
    "completion",
)
"""Every CLI area module under ``kustos.cli``, in the order their commands are listed."""

COMMAND_AREAS: Final[Mapping[str, str]] = {
    "server": "server",
    "operator": "operator",
    "controller": "controller",
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
    "lint": "lint",
    "secrets": "secrets",
    "transit": "transit",
    "kms-plugin": "kmsplugin",
    "cluster": "cluster",
    "completion": "completion",
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

_COMPLETE_VAR: Final = "_KUSTOS_COMPLETE"
"""Set by the shell completion scripts; completion needs every area's commands."""

_HELP: Final = (
    "Kustos: secrets management for Kubernetes.\n\n"
    "Start a dev server with `kustos server --dev`, then `kustos kv put secret/app password=...`."
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kustos {__version__}")
        raise typer.Exit()


def normalize_flags(root: Any, args: Sequence[str]) -> list[str]:
    """Rewrite Vault's single-dash long options (``-field=x``, ``-mount x``) to ``--field=x``, ``--mount x``.

    Only a word that names a long option of the command being run (or of a
    group on the way to it) is rewritten; values, short options (``-o``),
    ``-`` (stdin) and everything after ``--`` are left as they are.
    """
    command = root
    longs = _long_options(command)
    out: list[str] = []
    for position, arg in enumerate(args):
        if arg == "--":
            out.extend(args[position:])
            break
        commands = getattr(command, "commands", None)
        if commands is not None and not arg.startswith("-") and arg in commands:
            command = commands[arg]
            longs = _long_options(command)
        elif arg.startswith("-") and not arg.startswith("--") and len(arg.split("=", 1)[0]) > 2:
            if "-" + arg.split("=", 1)[0] in longs:
                arg = "-" + arg
        out.append(arg)
    return out


def _long_options(command: Any) -> frozenset[str]:
    return frozenset(
        opt
        for param in getattr(command, "params", ())
        for opt in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ()))
        if opt.startswith("--")
    )


class _RootGroup(TyperGroup):
    """The root command: single-dash long options, and plain-text usage errors."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = normalize_flags(self, sys.argv[1:] if args is None else list(args))
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, False, **extra)
        try:
            code = super().main(argv, prog_name, complete_var, False, **extra)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        except typer.TyperException as exc:
            show = getattr(exc, "show", None)  # usage errors: "Usage: ...", "Try ...", "Error: ..."
            if callable(show):
                show()
            else:
                typer.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


def build_app(areas: Iterable[str] = AREAS) -> typer.Typer:
    """A root app with the commands of ``areas`` registered."""
    root = typer.Typer(
        name="kustos",
        cls=_RootGroup,
        help=_HELP,
        no_args_is_help=True,
        add_completion=True,
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
    if os.environ.get(_COMPLETE_VAR):
        return AREAS
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
