"""Rendering command results as a table, JSON or YAML, and reporting errors.

Every command whose result is data takes ``--output/-o table|json|yaml``
(:data:`OutputOption`; Vault's ``-format=json`` is the same option) and prints
through :func:`render`. A table is drawn with box characters on a terminal;
when stdout is a pipe or a file it is plain tab-separated text (a header line,
then one line per row) that ``cut``, ``awk`` and ``sort`` read as they are,
whatever the terminal's width. Errors go through :func:`fail`: one line on
stderr naming what was wrong (never wrapped, however long the path in it),
and a non-zero exit.
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

__all__ = ["OutputFormat", "OutputOption", "fail", "render", "report", "stderr"]

stderr = Console(stderr=True)


class OutputFormat(enum.StrEnum):
    """How a command prints data."""

    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        "--format",
        help="How to print the result: table, json or yaml (tab-separated when piped).",
        case_sensitive=False,
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
    if not sys.stdout.isatty():
        sys.stdout.write(_plain(data, columns=columns))
        return
    console = Console()
    table = Table(title=title, show_lines=False)
    if isinstance(data, Mapping):
        table.add_column("Key")
        table.add_column("Value", overflow="fold")
        for key, value in data.items():
            table.add_row(str(key), _cell(value))
    elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
        header, rows = _grid(data, columns)
        for col in header:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
    else:
        console.print(_cell(data), soft_wrap=True)
        return
    console.print(table)


def _grid(data: Sequence[Any], columns: Sequence[str] | None) -> tuple[list[str], list[list[str]]]:
    """A list of rows as a header and cells: mappings by column, anything else in one column."""
    rows = list(data)
    if rows and all(isinstance(r, Mapping) for r in rows):
        cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
        return cols, [[_cell(row.get(c)) for c in cols] for row in rows]
    return [columns[0] if columns else "Value"], [[_cell(row)] for row in rows]


def _tsv_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _plain(data: Any, *, columns: Sequence[str] | None) -> str:
    """Tab-separated text for a table that goes to a pipe or a file (tabs and newlines escaped)."""
    if isinstance(data, Mapping):
        header, rows = ["Key", "Value"], [[str(k), _cell(v)] for k, v in data.items()]
    elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
        header, rows = _grid(data, columns)
    else:
        return _cell(data) + "\n"
    return "".join("\t".join(_tsv_cell(c) for c in line) + "\n" for line in [header, *rows])


def report(message: str, data: Mapping[str, Any], fmt: OutputFormat) -> None:
    """The outcome of a command that changes something: a line on stderr, or ``data`` as JSON/YAML.

    With ``-o table`` (the default) a person reads ``message``; with ``-o json``
    or ``-o yaml`` a script reads ``data`` on stdout (and stderr stays quiet).
    """
    if fmt is OutputFormat.table:
        stderr.print(message, highlight=False, soft_wrap=True)
    else:
        render(dict(data), fmt)


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print ``Error: message`` on stderr as one line (never wrapped) and exit with ``code``."""
    stderr.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
