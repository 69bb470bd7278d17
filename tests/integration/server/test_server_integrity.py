"""Tampering with stored ciphertexts is detected: the read fails with a generic 500, never another value.

The server runs with ``--cache-entries 0`` so it reads every record from
SQLite, where the test changes bytes through the storage layer while the
server runs (WAL lets two processes share the file).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from kustos.store import SqliteBackend
from tests.support.server import RunningServer, start_server

INTEGRITY = "integrity check failed: a stored record could not be decrypted or verified"


@pytest.fixture(scope="module")
def uncached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("integrity"), "--cache-entries", "0") as server:
        yield server


@pytest.fixture
def http(uncached: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=uncached.addr, headers={"X-Vault-Token": uncached.root_token}) as client:
        yield client


@pytest.fixture
async def storage(uncached: RunningServer) -> AsyncIterator[SqliteBackend]:
    backend = SqliteBackend(uncached.data_dir / "kustos.db")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def _version_key(http: httpx.Client, path: str, version: int) -> str:
    uuid = http.get("/v1/sys/mounts").json()["data"]["secret/"]["uuid"]
    return f"logical/{uuid}/ver/{path}@{version}"


def _write(http: httpx.Client, path: str, value: str) -> None:
    response = http.post(f"/v1/secret/data/{path}", json={"data": {"password": value}})
    assert response.status_code == 200, response.text


def _assert_integrity_error(response: httpx.Response, *values: str) -> None:
    assert response.status_code == 500
    assert response.json() == {"errors": [INTEGRITY]}
    for value in values:
        assert value not in response.text


async def test_flipped_byte_fails_that_read_only(http: httpx.Client, storage: SqliteBackend) -> None:
    _write(http, "tamper/flip", "flip-value-1")
    _write(http, "tamper/other", "other-value-1")
    key = _version_key(http, "tamper/flip", 1)
    original = await storage.get(key)
    assert original is not None
    for position in (len(original) - 1, len(original) // 2, 10):  # tag, ciphertext, wrapped key
        flipped = bytearray(original)
        flipped[position] ^= 0x01
        async with storage.transaction() as tx:
            await tx.put(key, bytes(flipped))
        _assert_integrity_error(http.get("/v1/secret/data/tamper/flip"), "flip-value-1")
    assert http.get("/v1/secret/data/tamper/other").json()["data"]["data"] == {"password": "other-value-1"}

    async with storage.transaction() as tx:
        await tx.put(key, original)
    assert http.get("/v1/secret/data/tamper/flip").json()["data"]["data"] == {"password": "flip-value-1"}


async def test_ciphertext_copied_to_another_secret_does_not_decrypt(http: httpx.Client, storage: SqliteBackend) -> None:
    _write(http, "tamper/a", "alpha-value")
    _write(http, "tamper/b", "bravo-value")
    a_blob = await storage.get(_version_key(http, "tamper/a", 1))
    assert a_blob is not None
    async with storage.transaction() as tx:
        await tx.put(_version_key(http, "tamper/b", 1), a_blob)
    _assert_integrity_error(http.get("/v1/secret/data/tamper/b"), "alpha-value", "bravo-value")
    assert http.get("/v1/secret/data/tamper/a").json()["data"]["data"] == {"password": "alpha-value"}


async def test_ciphertext_copied_to_another_version_does_not_decrypt(http: httpx.Client, storage: SqliteBackend) -> None:
    _write(http, "tamper/versions", "first-value")
    _write(http, "tamper/versions", "second-value")
    first = await storage.get(_version_key(http, "tamper/versions", 1))
    assert first is not None
    async with storage.transaction() as tx:
        await tx.put(_version_key(http, "tamper/versions", 2), first)
    _assert_integrity_error(http.get("/v1/secret/data/tamper/versions"), "first-value")
    _assert_integrity_error(http.get("/v1/secret/subkeys/tamper/versions"), "first-value")
    assert http.get("/v1/secret/data/tamper/versions?version=1").json()["data"]["data"] == {"password": "first-value"}


async def test_ciphertext_copied_to_another_mount_does_not_decrypt(http: httpx.Client, storage: SqliteBackend) -> None:
    assert http.post("/v1/sys/mounts/copy-target", json={"type": "kv-v2"}).status_code == 204
    _write(http, "tamper/mounts", "mount-a-value")
    assert http.post("/v1/copy-target/data/tamper/mounts", json={"data": {"password": "mount-b-value"}}).status_code == 200
    mounts = http.get("/v1/sys/mounts").json()["data"]
    source = f"logical/{mounts['secret/']['uuid']}/ver/tamper/mounts@1"
    target = f"logical/{mounts['copy-target/']['uuid']}/ver/tamper/mounts@1"
    blob = await storage.get(source)
    assert blob is not None
    async with storage.transaction() as tx:
        await tx.put(target, blob)
    _assert_integrity_error(http.get("/v1/copy-target/data/tamper/mounts"), "mount-a-value")


async def test_missing_ciphertext_of_a_live_version_is_an_integrity_error(
    http: httpx.Client, storage: SqliteBackend
) -> None:
    _write(http, "tamper/gone", "gone-value")
    async with storage.transaction() as tx:
        await tx.delete(_version_key(http, "tamper/gone", 1))
    _assert_integrity_error(http.get("/v1/secret/data/tamper/gone"))


def test_integrity_failures_are_counted(http: httpx.Client) -> None:
    metrics = http.get("/metrics").text
    line = next(row for row in metrics.splitlines() if row.startswith("kustos_integrity_errors_total "))
    assert float(line.split()[1]) >= 1
