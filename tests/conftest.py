"""Shared test fixtures. Integration fixtures start real components on loopback."""

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from tests.support.cli import cli_runner as _cli_runner
from tests.support.gpg import GpgKey, gpg_home
from tests.support.kube import control_plane
from tests.support.postgres import postgres_url

__all__ = ["cli_runner", "control_plane", "gpg_key", "postgres_url"]


@pytest.fixture
def cli_runner() -> CliRunner:
    """Typer's runner at a fixed terminal width (see ``tests/support/cli.py``)."""
    return _cli_runner()


@pytest.fixture(scope="session")
def gpg_key() -> Iterator[GpgKey]:
    """One fresh PGP key pair for the session, in a short GNUPGHOME under /tmp."""
    with gpg_home() as key:
        yield key
