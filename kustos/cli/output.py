"""Rendering command results as a table, JSON or YAML, and reporting errors.

Every command whose result is data takes ``--output/-o table|json|yaml``
(:data:`OutputOption`) and prints through :func:`render`. Errors go through
:func:`fail`: a message on stderr naming what was wrong, and a non-zero exit.
"""

from __future__ import annotations

import enum
import io
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from ruamel.yaml import YAML

__all__ = ["OutputFormat", "OutputOption", "fail", "render", "stderr"]

stderr = Console(stderr=True)


class OutputFormat(enum.StrEnum):
    """How a command prints data."""

    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output", "-o", help="How to print the result: table, json or yaml.", case_sensitive=False
    ),
]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def to_yaml(data: Any) -> str:
    """Dump plain data as block-style YAML."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    return buffer.getvalue()


def render(
    data: Any,
    fmt: OutputFormat,
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Print ``data`` to stdout in ``fmt``.

    For ``table``: a list of mappings becomes one row per item (``columns``
    picks and orders them); a mapping becomes a two-column Key/Value table.
    """
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        return
    if fmt is OutputFormat.yaml:
        sys.stdout.write(to_yaml(json.loads(json.dumps(data, default=str))))
        return
    console = Console()
    table = Table(title=title, show_lines=False)
    if isinstance(data, Mapping):
        table.add_column("Key")
        table.add_column("Value", overflow="fold")
        for key, value in data.items():
            table.add_row(str(key), _cell(value))
    elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
        rows = list(data)
        if rows and all(isinstance(r, Mapping) for r in rows):
            cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
            for col in cols:
                table.add_column(col)
            for row in rows:
                table.add_row(*(_cell(row.get(c)) for c in cols))
        else:
            table.add_column(columns[0] if columns else "Value")
            for row in rows:
                table.add_row(_cell(row))
    else:
        console.print(_cell(data))
        return
    console.print(table)


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print ``Error: message`` on stderr and exit with ``code``."""
    stderr.print(f"[bold red]Error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)
