"""Helpers for the CLI integration tests: a CLI runner bound to one real server.

The server itself comes from ``tests/support/server.py`` (a ``kustos server``
subprocess on a free loopback port). ``Cli`` runs ``kustos`` commands
in-process through Typer's ``CliRunner`` with an explicit environment
(address, token, a temporary HOME), so nothing leaks in from the developer's shell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from kustos.cli.main import app
from tests.support.cli import cli_runner
from tests.support.server import RunningServer

__all__ = ["Cli", "cli_env"]


@dataclass
class Cli:
    """Runs ``kustos`` commands against one server with a fixed environment."""

    env: dict[str, str]
    runner: CliRunner = field(default_factory=cli_runner)

    def run(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        return self.runner.invoke(app, list(args), input=input, env={**self.env, **(env or {})})

    def ok(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        result = self.run(*args, input=input, env=env)
        assert result.exit_code == 0, (
            f"kustos {' '.join(args)} -> {result.exit_code}\n{result.stderr}\n{result.stdout}"
        )
        return result

    def fails(
        self, *args: str, code: int = 1, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        result = self.run(*args, input=input, env=env)
        assert result.exit_code == code, (
            f"kustos {' '.join(args)} -> {result.exit_code}\n{result.stderr}\n{result.stdout}"
        )
        assert result.stderr.startswith("Error:"), result.stderr
        return result


def cli_env(server: RunningServer, home: Path) -> dict[str, str]:
    """The environment of a user of ``server`` whose home directory is ``home``."""
    return {
        "HOME": str(home),
        "KUSTOS_ADDR": server.addr,
        "KUSTOS_TOKEN": server.root_token,
        "VAULT_ADDR": "",
        "VAULT_TOKEN": "",
    }
