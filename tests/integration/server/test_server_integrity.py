"""Tampering with stored ciphertexts is detected: the read fails with a generic 500, never another value.

The server runs with ``--cache-entries 0`` so it reads every record from
SQLite, where the test changes bytes through the storage layer while the
server runs (WAL lets two processes share the file).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from kustos.store import SqliteBackend
from tests.support.server import RunningServer

INTEGRITY = "integrity check failed: a stored record could not be decrypted or verified"


@pytest.fixture
def http(uncached: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=uncached.addr, headers={"X-Vault-Token": uncached.root_token}
    ) as client:
        yield client


def _prefix(http: httpx.Client, mount: str = "secret/") -> str:
    return f"logical/{http.get('/v1/sys/mounts').json()['data'][mount]['uuid']}/"


ATTESTATION = 96


def _split(record: bytes) -> tuple[bytes, bytes]:
    """A metadata record is b"KVM2" + uint32 length + JSON + its attestation (96 bytes) + the
    current version's ciphertext; returns (everything before the ciphertext, the ciphertext)."""
    assert record[:4] == b"KVM2"
    end = 8 + int.from_bytes(record[4:8], "big") + ATTESTATION
    return record[:end], record[end:]


async def _ciphertext(storage: SqliteBackend, prefix: str, path: str, version: int) -> bytes:
    """Where version ``version`` of ``path`` is stored: in the metadata record if current, else its own."""
    head, latest = _split(await _must(storage, f"{prefix}meta/{path}"))
    if json.loads(head[8:-ATTESTATION])["current_version"] == version:
        return latest
    return await _must(storage, f"{prefix}ver/{path}@{version}")


async def _replace(
    storage: SqliteBackend, prefix: str, path: str, version: int, blob: bytes
) -> None:
    meta_key = f"{prefix}meta/{path}"
    head, _ = _split(await _must(storage, meta_key))
    async with storage.transaction() as tx:
        if json.loads(head[8:-ATTESTATION])["current_version"] == version:
            await tx.put(meta_key, head + blob)
        else:
            await tx.put(f"{prefix}ver/{path}@{version}", blob)


async def _must(storage: SqliteBackend, key: str) -> bytes:
    value = await storage.get(key)
    assert value is not None, key
    return value


def _write(http: httpx.Client, path: str, value: str) -> None:
    response = http.post(f"/v1/secret/data/{path}", json={"data": {"password": value}})
    assert response.status_code == 200, response.text


def _assert_integrity_error(response: httpx.Response, *values: str) -> None:
    assert response.status_code == 500
    assert response.json() == {"errors": [INTEGRITY]}
    for value in values:
        assert value not in response.text


async def test_flipped_byte_fails_that_read_only(
    http: httpx.Client, storage: SqliteBackend
) -> None:
    _write(http, "tamper/flip", "flip-value-1")
    _write(http, "tamper/other", "other-value-1")
    _write(http, "tamper/flip", "flip-value-2")
    prefix = _prefix(http)
    for version in (2, 1):  # the current version (in the metadata record), then an older one
        original = await _ciphertext(storage, prefix, "tamper/flip", version)
        for position in (len(original) - 1, len(original) // 2, 10):  # tag, ciphertext, wrapped key
            flipped = bytearray(original)
            flipped[position] ^= 0x01
            await _replace(storage, prefix, "tamper/flip", version, bytes(flipped))
            _assert_integrity_error(
                http.get("/v1/secret/data/tamper/flip", params={"version": version}),
                "flip-value-1",
                "flip-value-2",
            )
        await _replace(storage, prefix, "tamper/flip", version, original)
        expected = {"password": f"flip-value-{version}"}
        assert (
            http.get("/v1/secret/data/tamper/flip", params={"version": version}).json()["data"][
                "data"
            ]
            == expected
        )
    assert http.get("/v1/secret/data/tamper/other").json()["data"]["data"] == {
        "password": "other-value-1"
    }


async def test_ciphertext_copied_to_another_secret_does_not_decrypt(
    http: httpx.Client, storage: SqliteBackend
) -> None:
    _write(http, "tamper/a", "alpha-value")
    _write(http, "tamper/b", "bravo-value")
    prefix = _prefix(http)
    a_blob = await _ciphertext(storage, prefix, "tamper/a", 1)
    await _replace(storage, prefix, "tamper/b", 1, a_blob)
    _assert_integrity_error(http.get("/v1/secret/data/tamper/b"), "alpha-value", "bravo-value")
    assert http.get("/v1/secret/data/tamper/a").json()["data"]["data"] == {
        "password": "alpha-value"
    }


async def test_ciphertext_copied_to_another_version_does_not_decrypt(
    http: httpx.Client, storage: SqliteBackend
) -> None:
    _write(http, "tamper/versions", "first-value")
    _write(http, "tamper/versions", "second-value")
    prefix = _prefix(http)
    first = await _ciphertext(storage, prefix, "tamper/versions", 1)
    await _replace(storage, prefix, "tamper/versions", 2, first)
    _assert_integrity_error(http.get("/v1/secret/data/tamper/versions"), "first-value")
    _assert_integrity_error(http.get("/v1/secret/subkeys/tamper/versions"), "first-value")
    assert http.get("/v1/secret/data/tamper/versions?version=1").json()["data"]["data"] == {
        "password": "first-value"
    }


async def test_ciphertext_copied_to_another_mount_does_not_decrypt(
    http: httpx.Client, storage: SqliteBackend
) -> None:
    assert http.post("/v1/sys/mounts/copy-target", json={"type": "kv-v2"}).status_code == 204
    _write(http, "tamper/mounts", "mount-a-value")
    assert (
        http.post(
            "/v1/copy-target/data/tamper/mounts", json={"data": {"password": "mount-b-value"}}
        ).status_code
        == 200
    )
    blob = await _ciphertext(storage, _prefix(http), "tamper/mounts", 1)
    await _replace(storage, _prefix(http, "copy-target/"), "tamper/mounts", 1, blob)
    _assert_integrity_error(http.get("/v1/copy-target/data/tamper/mounts"), "mount-a-value")


async def test_missing_ciphertext_of_a_live_version_is_an_integrity_error(
    http: httpx.Client, storage: SqliteBackend
) -> None:
    _write(http, "tamper/gone", "gone-value-1")
    _write(http, "tamper/gone", "gone-value-2")
    prefix = _prefix(http)
    async with storage.transaction() as tx:
        await tx.delete(f"{prefix}ver/tamper/gone@1")
    _assert_integrity_error(http.get("/v1/secret/data/tamper/gone", params={"version": 1}))
    await _replace(storage, prefix, "tamper/gone", 2, b"")  # current version's ciphertext cut off
    _assert_integrity_error(http.get("/v1/secret/data/tamper/gone"))


def _integrity_errors(http: httpx.Client) -> float:
    metrics = http.get("/metrics").text
    line = next(
        row for row in metrics.splitlines() if row.startswith("kustos_integrity_errors_total ")
    )
    return float(line.split()[1])


async def test_integrity_failures_are_counted(http: httpx.Client, storage: SqliteBackend) -> None:
    before = _integrity_errors(http)  # whatever earlier tests left: this test makes its own
    _write(http, "tamper/counted", "counted-value")
    await _replace(storage, _prefix(http), "tamper/counted", 1, b"\x00" * 60)
    _assert_integrity_error(http.get("/v1/secret/data/tamper/counted"))
    assert _integrity_errors(http) == before + 1
