"""Fixtures for the identity tests: a real ``kustos server --dev`` per module, hvac clients and token helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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
def login(vault: hvac.Client, kustos_server: RunningServer) -> Iterator[Callable[..., hvac.Client]]:
    """``login("p1", "p2", display_name=...)``: an hvac client holding a fresh token with those policies."""
    clients: list[hvac.Client] = []

    def make(
        *policies: str, display_name: str = "tester", meta: dict[str, str] | None = None
    ) -> hvac.Client:
        token = vault.auth.token.create(
            policies=list(policies), ttl="1h", display_name=display_name, meta=meta
        )["auth"]["client_token"]
        client = hvac.Client(url=kustos_server.addr, token=token)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.adapter.close()
