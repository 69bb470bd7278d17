"""Fixtures for the server integration tests: a real ``kustos server --dev`` per module, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import hvac
import pytest

from tests.support.server import RunningServer, kustos_server

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
