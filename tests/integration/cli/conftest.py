"""Fixtures for the CLI integration tests: one dev server per module, a fresh CLI environment per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.cli._support import Cli, cli_env
from tests.support.server import RunningServer, kustos_server

__all__ = ["cli", "kustos_server"]


@pytest.fixture
def cli(kustos_server: RunningServer, tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(env=cli_env(kustos_server, home))
