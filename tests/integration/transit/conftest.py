"""Fixtures for the transit integration tests: a real ``kustos server --dev`` with a transit mount."""

from __future__ import annotations

from collections.abc import Iterator

import hvac
import pytest

from tests.support.server import RunningServer, kustos_server

__all__ = ["kustos_server"]


@pytest.fixture(scope="module")
def transit_server(kustos_server: RunningServer) -> RunningServer:
    """The module's server, with transit enabled at ``transit/`` through hvac (as Vault users do)."""
    client = hvac.Client(url=kustos_server.addr, token=kustos_server.root_token)
    try:
        if "transit/" not in client.sys.list_mounted_secrets_engines()["data"]:
            client.sys.enable_secrets_engine("transit", path="transit")
    finally:
        client.adapter.close()
    return kustos_server


@pytest.fixture
def vault(transit_server: RunningServer) -> Iterator[hvac.Client]:
    """The unmodified hvac client, logged in with the root token."""
    client = hvac.Client(url=transit_server.addr, token=transit_server.root_token)
    try:
        yield client
    finally:
        client.adapter.close()
