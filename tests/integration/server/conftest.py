"""Fixtures for the server integration tests: a real ``kustos server --dev`` per module, over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import hvac
import pytest

from kustos.store import SqliteBackend
from tests.support.server import RunningServer, kustos_server, start_server

__all__ = ["kustos_server"]


@pytest.fixture
def vault(kustos_server: RunningServer) -> Iterator[hvac.Client]:
    """The unmodified hvac client, logged in with the root token."""
    client = hvac.Client(url=kustos_server.addr, token=kustos_server.root_token)
    try:
        yield client
    finally:
        client.adapter.close()


@pytest.fixture
def http(kustos_server: RunningServer) -> Iterator[httpx.Client]:
    """A raw HTTP client with the root token, for what hvac does not cover."""
    with httpx.Client(
        base_url=kustos_server.addr,
        headers={"X-Vault-Token": kustos_server.root_token},
        timeout=10.0,
    ) as client:
        yield client


@pytest.fixture(scope="module")
def uncached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A dev server for the module without a read cache (``--cache-entries 0``): it reads every
    record from SQLite, where a test changes bytes behind its back (WAL lets two processes share it)."""
    with start_server(tmp_path_factory.mktemp("uncached"), "--cache-entries", "0") as server:
        yield server


@pytest.fixture
async def storage(uncached: RunningServer) -> AsyncIterator[SqliteBackend]:
    """The storage of :func:`uncached`, opened by the test."""
    backend = SqliteBackend(uncached.data_dir / "kustos.db")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
