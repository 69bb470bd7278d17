"""The one way tests run the ``kustos`` CLI in-process: Typer's ``CliRunner`` at a fixed width.

Every CLI test takes the ``cli_runner`` fixture (``tests/conftest.py``) or
calls :func:`cli_runner`, so output never depends on the developer's
terminal: the width is :data:`WIDTH` columns, and stdout is not a terminal
(tables come out tab-separated, see :mod:`kustos.cli.output`).
"""

from __future__ import annotations

from typing import Final

from typer.testing import CliRunner

__all__ = ["WIDTH", "cli_runner"]

WIDTH: Final = 120
"""The terminal width CLI tests run at (help and rich output wrap here, never earlier)."""


def cli_runner() -> CliRunner:
    """A runner whose environment pins the terminal width and leaves no KUSTOS_*/VAULT_* setting in."""
    return CliRunner(
        env={
            "COLUMNS": str(WIDTH),
            "LINES": "40",
            "KUSTOS_ADDR": None,
            "KUSTOS_TOKEN": None,
            "VAULT_ADDR": None,
            "VAULT_TOKEN": None,
        }
    )
