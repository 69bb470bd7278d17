"""Token auth basics and the sys endpoints, over HTTP with hvac and raw requests."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import httpx
import hvac
import hvac.exceptions
import pytest

from kustos.store import SqliteBackend
from tests.support.server import RunningServer


def test_health_codes_and_overrides(kustos_server: RunningServer) -> None:
    health = httpx.get(f"{kustos_server.addr}/v1/sys/health")
    assert health.status_code == 200
    body = health.json()
    assert body["initialized"] is True and body["sealed"] is False and body["standby"] is False
    assert health.headers["content-type"] == "application/json"
    assert (
        httpx.get(f"{kustos_server.addr}/v1/sys/health", params={"activecode": 299}).status_code
        == 299
    )
    assert httpx.head(f"{kustos_server.addr}/v1/sys/health").status_code == 200
    bad = httpx.get(f"{kustos_server.addr}/v1/sys/health", params={"activecode": "x"})
    assert bad.status_code == 400 and "activecode must be an integer" in bad.json()["errors"][0]
    status = httpx.get(f"{kustos_server.addr}/v1/sys/seal-status").json()
    assert (status["type"], status["initialized"], status["sealed"]) == ("local", True, False)
    assert status["storage_type"] == "sqlite"


def test_hvac_sys_calls(vault: hvac.Client) -> None:
    assert vault.sys.is_initialized() is True
    assert vault.sys.is_sealed() is False
    assert vault.is_authenticated() is True
    assert vault.sys.read_health_status(method="GET")["initialized"] is True


def test_root_token_lookup_self(vault: hvac.Client, kustos_server: RunningServer) -> None:
    data = vault.auth.token.lookup_self()["data"]
    assert data["policies"] == ["root"]
    assert data["display_name"] == "root"
    assert data["ttl"] == 0 and data["expire_time"] is None
    assert data["id"] == kustos_server.root_token
    assert data["path"] == "auth/token/root"


def test_bearer_header_works(kustos_server: RunningServer) -> None:
    response = httpx.get(
        f"{kustos_server.addr}/v1/auth/token/lookup-self",
        headers={"Authorization": f"Bearer {kustos_server.root_token}"},
    )
    assert response.status_code == 200
    assert response.json()["data"]["policies"] == ["root"]


@pytest.fixture
def user_token(vault: hvac.Client) -> str:
    created = vault.auth.token.create(
        policies=["default"], ttl="1h", display_name="CI Bot", meta={"team": "a"}
    )
    auth = created["auth"]
    assert auth["policies"] == ["default"]
    assert auth["lease_duration"] == 3600
    assert auth["renewable"] is True
    assert auth["orphan"] is False
    assert auth["client_token"].startswith("hvs.") and len(auth["client_token"]) >= 28
    token: str = auth["client_token"]
    return token


def test_created_token_can_only_manage_itself(
    kustos_server: RunningServer, user_token: str
) -> None:
    user = hvac.Client(url=kustos_server.addr, token=user_token)
    data = user.auth.token.lookup_self()["data"]
    assert data["display_name"] == "token-ci-bot"
    assert data["meta"] == {"team": "a"}
    assert 0 < data["ttl"] <= 3600
    with pytest.raises(hvac.exceptions.Forbidden):
        user.secrets.kv.v2.read_secret_version(path="anything", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        user.secrets.kv.v2.create_or_update_secret(path="anything", secret={"k": "v"})
    with pytest.raises(hvac.exceptions.Forbidden):
        user.auth.token.create(policies=["default"])
    with pytest.raises(hvac.exceptions.Forbidden):
        user.sys.list_mounted_secrets_engines()
    renewed = user.auth.token.renew_self(increment="2h")["auth"]
    assert 3600 < renewed["lease_duration"] <= 7200
    user.auth.token.revoke_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        user.auth.token.lookup_self()


def test_revoking_a_parent_revokes_its_children(
    vault: hvac.Client, kustos_server: RunningServer
) -> None:
    parent_token = vault.auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
    parent = hvac.Client(url=kustos_server.addr, token=parent_token)
    child_token = parent.auth.token.create(policies=["default"])["auth"]["client_token"]
    orphan_token = parent.auth.token.create(policies=["default"], no_parent=True)["auth"][
        "client_token"
    ]
    child = hvac.Client(url=kustos_server.addr, token=child_token)
    assert child.auth.token.lookup_self()["data"]["ttl"] <= 3600  # never outlives its parent
    parent.auth.token.revoke_self()
    for token in (parent_token, child_token):
        with pytest.raises(hvac.exceptions.Forbidden):
            hvac.Client(url=kustos_server.addr, token=token).auth.token.lookup_self()
    assert (
        hvac.Client(url=kustos_server.addr, token=orphan_token).auth.token.lookup_self()["data"][
            "orphan"
        ]
        is True
    )


def test_lookup_and_revoke_by_accessor(vault: hvac.Client, kustos_server: RunningServer) -> None:
    created = vault.auth.token.create(policies=["default"])["auth"]
    looked = vault.auth.token.lookup_accessor(created["accessor"])["data"]
    assert looked["id"] == "" and looked["policies"] == ["default"]
    vault.auth.token.revoke_accessor(created["accessor"])
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=kustos_server.addr, token=created["client_token"]).auth.token.lookup_self()


def test_child_policies_must_be_a_subset(vault: hvac.Client, kustos_server: RunningServer) -> None:
    limited = vault.auth.token.create(policies=["default"])["auth"]["client_token"]
    response = httpx.post(
        f"{kustos_server.addr}/v1/auth/token/create",
        headers={"X-Vault-Token": limited},
        json={"policies": ["root"]},
    )
    assert response.status_code == 403


async def test_tokens_are_stored_only_as_hashes(
    vault: hvac.Client, kustos_server: RunningServer
) -> None:
    token = vault.auth.token.create(policies=["default"])["auth"]["client_token"]
    backend = SqliteBackend(kustos_server.data_dir / "kustos.db")
    await backend.open()
    try:
        found_hash = False
        async for key, value in backend.scan(""):
            assert token.encode() not in key.encode() and token.encode() not in value
            assert kustos_server.root_token.encode() not in value
            found_hash = (
                found_hash or key == f"auth/token/id/{hashlib.sha256(token.encode()).hexdigest()}"
            )
        assert found_hash
    finally:
        await backend.close()
    raw = (kustos_server.data_dir / "kustos.db").read_bytes()
    assert token.encode() not in raw


@pytest.fixture
def http(kustos_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=kustos_server.addr, headers={"X-Vault-Token": kustos_server.root_token}
    ) as client:
        yield client


def test_ui_mounts_preflight(http: httpx.Client) -> None:
    data = http.get("/v1/sys/internal/ui/mounts/secret/app").json()["data"]
    assert (
        data["type"] == "kv" and data["options"] == {"version": "2"} and data["path"] == "secret/"
    )


def test_dev_token_file_was_written(kustos_server: RunningServer) -> None:
    _stdout_with(kustos_server, kustos_server.root_token)
    token_file = kustos_server.home / ".kustos" / "token"
    assert token_file.read_text().strip() == kustos_server.root_token
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert kustos_server.root_token in _stdout_with(kustos_server, kustos_server.root_token)


def test_dev_restart_keeps_data_and_points_at_the_token(
    kustos_server: RunningServer, http: httpx.Client
) -> None:
    assert http.post("/v1/secret/data/survives", json={"data": {"k": "v"}}).status_code == 200
    kustos_server.restart()
    assert http.get("/v1/secret/data/survives").json()["data"]["data"] == {"k": "v"}
    assert "Already initialized" in _stdout_with(kustos_server, "Already initialized")


def _stdout_with(server: RunningServer, text: str) -> str:
    """The server's stdout once it contains ``text`` (the banner follows the first answered request)."""
    deadline = time.monotonic() + 10
    while text not in server.stdout() and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.stdout()
