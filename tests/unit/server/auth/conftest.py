"""An in-process server (httpx's ASGI transport, real core on SQLite) whose clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kustos.config import KeyProviderConfig, ServerConfig, StorageConfig
from kustos.server import Core, create_app

ROOT = "hvs.auth-unit-root-token"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Server:
    core: Core
    http: httpx.AsyncClient
    clock: Clock

    async def login(self, path: str, body: dict[str, object]) -> httpx.Response:
        """A login call WITHOUT a token (login endpoints must not need one)."""
        return await self.http.post(f"/v1/{path}", json=body, headers={"X-Vault-Token": ""})


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    config = ServerConfig(
        storage=StorageConfig(url=f"sqlite:{tmp_path / 'kustos.db'}"),
        keys=KeyProviderConfig(kind="local", key_file=tmp_path / "kustos.key"),
        dev=True,
    )
    clock = Clock()
    core = await Core.open(config, clock=clock)
    await core.dev_bootstrap(root_token_id=ROOT)
    app = create_app(config, core=core)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://kustos",
        headers={"X-Vault-Token": ROOT},
    )
    try:
        yield Server(core=core, http=http, clock=clock)
    finally:
        await http.aclose()
        await core.close()
