"""The ASGI app in process (httpx's ASGI transport) with a real core on SQLite: dispatch, seal, errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kustos.config import KeyProviderConfig, ServerConfig, StorageConfig
from kustos.server import Core, create_app
from kustos.server.access import Authorizer, authorize
from kustos.server.tokens import TokenEntry

ROOT = "hvs.unit-root-token"


def _config(tmp_path: Path) -> ServerConfig:
    return ServerConfig(
        storage=StorageConfig(url=f"sqlite:{tmp_path / 'kustos.db'}"),
        keys=KeyProviderConfig(kind="local", key_file=tmp_path / "kustos.key"),
        dev=True,
        max_value_bytes=1024,
    )


async def _client(
    tmp_path: Path, authorizer: Authorizer = authorize
) -> tuple[Core, httpx.AsyncClient]:
    config = _config(tmp_path)
    core = await Core.open(config, authorizer=authorizer)
    await core.dev_bootstrap(root_token_id=ROOT)
    app = create_app(config, core=core)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://kustos",
        headers={"X-Vault-Token": ROOT},
    )
    return core, client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    core, http = await _client(tmp_path)
    try:
        yield http
    finally:
        await http.aclose()
        await core.close()


async def test_write_read_list(client: httpx.AsyncClient) -> None:
    write = await client.post("/v1/secret/data/app/db", json={"data": {"password": "p"}})
    assert write.status_code == 200 and write.json()["data"]["version"] == 1
    read = await client.get("/v1/secret/data/app/db")
    assert read.json()["data"]["data"] == {"password": "p"}
    listed = await client.get("/v1/secret/metadata/app", params={"list": "true"})
    assert listed.json()["data"]["keys"] == ["db"]
    empty = await client.get("/v1/secret/data/app/none")
    assert empty.status_code == 404 and empty.json() == {"errors": []}


async def test_seal_makes_data_paths_503_and_health_reports_it(client: httpx.AsyncClient) -> None:
    await client.post("/v1/secret/data/x", json={"data": {"k": "v"}})
    assert (await client.put("/v1/sys/seal")).status_code == 204
    sealed = await client.get("/v1/secret/data/x")
    assert sealed.status_code == 503 and sealed.json() == {"errors": ["Vault is sealed"]}
    assert (await client.post("/v1/auth/token/create", json={})).status_code == 503
    assert (await client.get("/v1/sys/health")).status_code == 503
    assert (await client.get("/v1/sys/health", params={"sealedcode": 200})).status_code == 200
    assert (await client.get("/v1/sys/seal-status")).json()["sealed"] is True
    metrics = (await client.get("/metrics")).text
    assert "kustos_sealed 1.0" in metrics
    unsealed = await client.put("/v1/sys/unseal", json={})
    assert unsealed.json()["sealed"] is False  # the local provider unseals by itself
    assert (await client.get("/v1/secret/data/x")).json()["data"]["data"] == {"k": "v"}


async def test_unexpected_errors_are_generic_500s(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def exploding(token: TokenEntry, path: str, capability: str) -> bool:
        raise RuntimeError("boom with value hunter2")

    core, http = await _client(tmp_path, authorizer=exploding)
    try:
        with caplog.at_level(logging.ERROR, logger="kustos.server.http"):
            response = await http.get("/v1/secret/data/x", headers={"X-Request-Id": "req-42"})
        assert response.status_code == 500
        assert response.json() == {
            "errors": ["internal error; see the server log for request id req-42"]
        }
        assert "hunter2" not in response.text
        assert any(getattr(r, "request_id", None) == "req-42" for r in caplog.records)
    finally:
        await http.aclose()
        await core.close()


async def test_request_ids(client: httpx.AsyncClient) -> None:
    given = await client.get("/v1/sys/health", headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    replaced = await client.get("/v1/sys/health", headers={"X-Request-Id": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    first = (await client.get("/v1/secret/data/none")).headers["x-request-id"]
    second = (await client.get("/v1/secret/data/none")).headers["x-request-id"]
    assert first != second and len(first) == len(second) == 36


async def test_no_content_and_head(client: httpx.AsyncClient) -> None:
    deleted = await client.delete("/v1/secret/data/none")
    assert (
        deleted.status_code == 204
        and deleted.content == b""
        and "content-type" not in deleted.headers
    )
    head = await client.head("/v1/sys/health")
    assert head.status_code == 200 and head.content == b""


async def test_body_limit_applies_to_streamed_bodies(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"data": {"k": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}}'

    response = await client.post("/v1/secret/data/big", content=chunks())
    assert response.status_code == 413
    assert "request body is larger than the maximum" in response.json()["errors"][0]
    assert (await client.get("/v1/secret/data/big")).status_code == 404


async def test_unknown_paths(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/sys/nothing")).status_code == 404
    assert (await client.get("/v1/auth/userpass/login")).status_code == 404
    assert (await client.get("/v1/auth/token/nothing")).status_code == 404
    assert (await client.put("/v1/sys/health")).status_code == 405
    assert (await client.get("/not-v1")).status_code == 404


async def test_mount_disable_drops_cached_records(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/sys/mounts/tmp", json={"type": "kv-v2"})).status_code == 204
    await client.post("/v1/tmp/data/x", json={"data": {"k": "v"}})
    assert (await client.get("/v1/tmp/data/x")).status_code == 200
    assert (await client.delete("/v1/sys/mounts/tmp")).status_code == 204
    assert (await client.get("/v1/tmp/data/x")).status_code == 404
    assert (await client.post("/v1/sys/mounts/tmp", json={"type": "kv-v2"})).status_code == 204
    assert (await client.get("/v1/tmp/data/x")).status_code == 404


async def test_capabilities_self(client: httpx.AsyncClient) -> None:
    root = await client.post("/v1/sys/capabilities-self", json={"paths": ["secret/data/x"]})
    assert root.status_code == 200
    assert root.json()["data"] == {"secret/data/x": ["root"], "capabilities": ["root"]}
    created = await client.post("/v1/auth/token/create", json={"policies": ["default"]})
    user = created.json()["auth"]["client_token"]
    answer = await client.post(
        "/v1/sys/capabilities-self",
        json={"paths": ["secret/data/x", "auth/token/lookup-self"]},
        headers={"X-Vault-Token": user},
    )
    assert answer.json()["data"] == {"secret/data/x": ["deny"], "auth/token/lookup-self": ["read"]}


async def test_response_wrapping_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/secret/data/x", headers={"X-Vault-Wrap-TTL": "60s"})
    assert response.status_code == 400
    assert "response wrapping" in response.json()["errors"][0]
