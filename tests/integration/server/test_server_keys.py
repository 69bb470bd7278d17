"""Key rotation over HTTP: rotate, rewrap every ciphertext, disable the old version; everything still reads.

The server keeps its default read cache here, so the test also shows that
rewrap and disable do not leave stale ciphertexts in memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from kustos.crypto.envelope import Keyring
from kustos.store import SqliteBackend
from tests.support.server import RunningServer, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("keys")) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.addr, headers={"X-Vault-Token": server.root_token}, timeout=30
    ) as client:
        yield client


async def _versions_in_storage(server: RunningServer) -> Counter[int]:
    backend = SqliteBackend(server.data_dir / "kustos.db")
    await backend.open()
    try:
        counts: Counter[int] = Counter()
        async for key, value in backend.scan("logical/"):
            if "/ver/" in key:
                counts[Keyring.key_version(value)] += 1
            elif "/meta/" in key:
                # b"KVM2" + uint32 length + JSON + its attestation (an envelope of 96 bytes)
                # + the current version's ciphertext: both are wrapped by a key version
                end = 8 + int.from_bytes(value[4:8], "big")
                counts[Keyring.key_version(value[end : end + 96])] += 1
                if value[end + 96 :]:
                    counts[Keyring.key_version(value[end + 96 :])] += 1
        return counts
    finally:
        await backend.close()


def _expected(http: httpx.Client) -> dict[tuple[str, str, int], dict[str, str]]:
    """Write secrets on two mounts (several versions, one destroyed); return what must read back."""
    assert (
        http.post(
            "/v1/sys/mounts/rotation", json={"type": "kv", "options": {"version": "2"}}
        ).status_code
        == 204
    )
    expected: dict[tuple[str, str, int], dict[str, str]] = {}
    for mount in ("secret", "rotation"):
        for n in range(6):
            for version in (1, 2):
                value = {"value": f"{mount}-{n}-v{version}"}
                assert (
                    http.post(f"/v1/{mount}/data/app/{n}", json={"data": value}).status_code == 200
                )
                expected[(mount, f"app/{n}", version)] = value
    assert http.post("/v1/secret/destroy/app/0", json={"versions": [1]}).status_code == 204
    del expected[("secret", "app/0", 1)]
    return expected


def _assert_all_read_back(
    http: httpx.Client, expected: dict[tuple[str, str, int], dict[str, str]]
) -> None:
    for (mount, path, version), value in expected.items():
        response = http.get(f"/v1/{mount}/data/{path}", params={"version": version})
        assert response.status_code == 200, (mount, path, version, response.text)
        assert response.json()["data"]["data"] == value


async def test_rotate_rewrap_disable(server: RunningServer, http: httpx.Client) -> None:
    expected = _expected(http)
    _assert_all_read_back(http, expected)  # fills the read cache with version-1 ciphertexts
    assert http.get("/v1/sys/key-status").json()["data"]["term"] == 1
    assert await _versions_in_storage(server) == Counter({1: 35})

    assert http.put("/v1/sys/rotate").status_code == 204
    assert http.get("/v1/sys/key-status").json()["data"]["term"] == 2
    assert (
        http.post("/v1/secret/data/after-rotate", json={"data": {"value": "new"}}).status_code
        == 200
    )
    expected[("secret", "after-rotate", 1)] = {"value": "new"}
    assert await _versions_in_storage(server) == Counter({1: 35, 2: 2})

    refused = http.post("/v1/sys/keyring/disable", json={"version": 1})
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        "key version 1 still protects 35 stored records; run rewrap first"
    ]

    partial = http.post("/v1/sys/rewrap", json={"max_records": 5}).json()["data"]
    assert partial == {
        "active_version": 2,
        "scanned": 37,
        "rewrapped": 5,
        "remaining": 30,
        "failed": 0,
    }
    report = http.post("/v1/sys/rewrap").json()["data"]
    assert report == {
        "active_version": 2,
        "scanned": 37,
        "rewrapped": 30,
        "remaining": 0,
        "failed": 0,
    }
    assert await _versions_in_storage(server) == Counter({2: 37})
    _assert_all_read_back(http, expected)

    assert http.post("/v1/sys/keyring/disable", json={"version": 1}).status_code == 204
    keyring = http.get("/v1/sys/keyring").json()["data"]
    assert keyring["active_version"] == 2
    assert [(v["version"], v["disabled"]) for v in keyring["versions"]] == [(1, True), (2, False)]
    _assert_all_read_back(http, expected)

    active = http.post("/v1/sys/keyring/disable", json={"version": 2})
    assert active.status_code == 400
    assert "cannot disable the active key version 2" in active.json()["errors"][0]
    unknown = http.post("/v1/sys/keyring/disable", json={"version": 9})
    assert unknown.status_code == 400 and "no key version 9" in unknown.json()["errors"][0]

    # after a restart the stored keyring (v1 disabled, v2 active) is what the server uses
    server.restart()
    _assert_all_read_back(http, expected)
    assert http.get("/v1/sys/key-status").json()["data"]["term"] == 2


def test_key_management_needs_root(server: RunningServer, http: httpx.Client) -> None:
    created = http.post("/v1/auth/token/create", json={"policies": ["default"]})
    token = created.json()["auth"]["client_token"]
    with httpx.Client(base_url=server.addr, headers={"X-Vault-Token": token}) as user:
        for method, path in (
            ("PUT", "/v1/sys/rotate"),
            ("POST", "/v1/sys/rewrap"),
            ("GET", "/v1/sys/key-status"),
        ):
            response = user.request(method, path)
            assert response.status_code == 403, path
        assert user.post("/v1/sys/keyring/disable", json={"version": 1}).status_code == 403
