"""A secret's version history (who wrote each version, why, which keys changed) is authenticated.

The history stays readable without decryption, but every metadata record
carries an attestation (an envelope bound to the mount, the path and the
SHA-256 of the record's JSON): editing ``created_by`` in the database is an
integrity error like a changed ciphertext, and so is moving the record to
another path or rewriting it in the unauthenticated format of older releases.
Records an older release wrote are attested once, when the server unseals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kustos.server.core import DATA_MIGRATIONS_KEY
from kustos.store import SqliteBackend
from tests.support.server import RunningServer, start_server

INTEGRITY = "integrity check failed: a stored record could not be decrypted or verified"
ATTESTATION = 96


@pytest.fixture
def http(uncached: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=uncached.addr, headers={"X-Vault-Token": uncached.root_token}, timeout=30
    ) as client:
        yield client


def _meta_key(http: httpx.Client, path: str, mount: str = "secret/") -> str:
    uuid = http.get("/v1/sys/mounts").json()["data"][mount]["uuid"]
    return f"logical/{uuid}/meta/{path}"


def _parts(record: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """(JSON document, attestation, current ciphertext) of a ``KVM2`` metadata record."""
    assert record[:4] == b"KVM2"
    end = 8 + int.from_bytes(record[4:8], "big")
    return json.loads(record[8:end]), record[end : end + ATTESTATION], record[end + ATTESTATION :]


def _record(document: dict[str, Any], tag: bytes, latest: bytes, magic: bytes = b"KVM2") -> bytes:
    text = json.dumps(document, separators=(",", ":")).encode()
    return magic + len(text).to_bytes(4, "big") + text + tag + latest


async def _get(storage: SqliteBackend, key: str) -> bytes:
    value = await storage.get(key)
    assert value is not None, key
    return value


async def _put(storage: SqliteBackend, key: str, value: bytes) -> None:
    async with storage.transaction() as tx:
        await tx.put(key, value)


def _write(http: httpx.Client, path: str, value: str, reason: str) -> None:
    response = http.post(
        f"/v1/secret/data/{path}",
        json={"data": {"password": value}},
        headers={"X-Kustos-Reason": reason},
    )
    assert response.status_code == 200, response.text


def _integrity_error(response: httpx.Response) -> bool:
    return response.status_code == 500 and response.json() == {"errors": [INTEGRITY]}


EDITS = {
    "created_by": lambda doc: doc["versions"]["1"].update(created_by="mallory"),
    "identity": lambda doc: doc["versions"]["2"].update(identity="ns/mallory"),
    "reason": lambda doc: doc["versions"]["2"].update(reason="approved by security"),
    "changes": lambda doc: doc["versions"]["2"].update(
        changes={"added": [], "changed": [], "removed": []}
    ),
    "created_time": lambda doc: doc["versions"]["1"].update(created_time="2001-01-01T00:00:00Z"),
    "destroyed": lambda doc: doc["versions"]["1"].update(destroyed=True),
    "a version removed": lambda doc: doc["versions"].pop("1"),
    "custom_metadata": lambda doc: doc.update(custom_metadata={"owner": "mallory"}),
    "max_versions": lambda doc: doc.update(max_versions=1),
}


@pytest.mark.parametrize("field", list(EDITS))
async def test_editing_the_history_is_an_integrity_error(
    http: httpx.Client, storage: SqliteBackend, field: str
) -> None:
    path = f"history/{field.replace(' ', '-')}"
    _write(http, path, "value-1", "first")
    _write(http, path, "value-2", "rotate after offboarding")
    key = _meta_key(http, path)
    original = await _get(storage, key)
    document, tag, latest = _parts(original)
    EDITS[field](document)
    await _put(storage, key, _record(document, tag, latest))

    assert _integrity_error(http.get(f"/v1/secret/metadata/{path}"))
    assert _integrity_error(http.get(f"/v1/secret/data/{path}"))
    refused = http.post(f"/v1/secret/data/{path}", json={"data": {"password": "value-3"}})
    assert _integrity_error(refused)  # nothing is built on a record that does not verify
    assert await _get(storage, key) == _record(document, tag, latest)

    await _put(storage, key, original)
    history = http.get(f"/v1/secret/metadata/{path}").json()["data"]["versions"]
    assert (
        history["1"]["created_by"] == "root"
        and history["2"]["reason"] == "rotate after offboarding"
    )


async def test_a_record_moved_to_another_path_is_an_integrity_error(
    http: httpx.Client, storage: SqliteBackend
) -> None:
    _write(http, "history/moved-a", "a", "a's reason")
    _write(http, "history/moved-b", "b", "b's reason")
    a_record = await _get(storage, _meta_key(http, "history/moved-a"))
    await _put(storage, _meta_key(http, "history/moved-b"), a_record)
    assert _integrity_error(http.get("/v1/secret/metadata/history/moved-b"))
    assert http.get("/v1/secret/metadata/history/moved-a").status_code == 200


async def test_the_old_unattested_format_is_refused_once_migrated(
    http: httpx.Client, storage: SqliteBackend
) -> None:
    _write(http, "history/downgrade", "v", "why")
    key = _meta_key(http, "history/downgrade")
    document, _, latest = _parts(await _get(storage, key))
    document["versions"]["1"]["created_by"] = "mallory"
    await _put(storage, key, _record(document, b"", latest, magic=b"KVM1"))
    assert _integrity_error(http.get("/v1/secret/metadata/history/downgrade"))
    assert _integrity_error(http.get("/v1/secret/data/history/downgrade"))


async def test_records_of_an_older_release_are_attested_when_the_server_unseals(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with start_server(tmp_path_factory.mktemp("history-migration")) as server:
        with httpx.Client(
            base_url=server.addr, headers={"X-Vault-Token": server.root_token}, timeout=30
        ) as client:
            for i in range(3):
                _write(client, f"old/{i}", f"value-{i}", f"reason {i}")
            _write(client, "old/0", "value-0b", "second version")
            before = {
                i: client.get(f"/v1/secret/metadata/old/{i}").json()["data"] for i in range(3)
            }
            keys = [_meta_key(client, f"old/{i}") for i in range(3)]
        server.stop()
        # what an older release left behind: KVM1 records (no attestation), no migration marker
        backend = SqliteBackend(server.data_dir / "kustos.db")
        await backend.open()
        try:
            for key in keys:
                document, _, latest = _parts(await _get(backend, key))
                await _put(backend, key, _record(document, b"", latest, magic=b"KVM1"))
            async with backend.transaction() as tx:
                await tx.delete(DATA_MIGRATIONS_KEY)
        finally:
            await backend.close()

        server.start()
        with httpx.Client(
            base_url=server.addr, headers={"X-Vault-Token": server.root_token}, timeout=30
        ) as client:
            for i in range(3):
                assert client.get(f"/v1/secret/metadata/old/{i}").json()["data"] == before[i]
            assert client.get("/v1/secret/data/old/0").json()["data"]["data"] == {
                "password": "value-0b"
            }
        server.stop()
        backend = SqliteBackend(server.data_dir / "kustos.db")
        await backend.open()
        try:
            assert [(await _get(backend, key))[:4] for key in keys] == [b"KVM2"] * 3
            assert await backend.get(DATA_MIGRATIONS_KEY) is not None
            # and from now on they are protected like any other
            document, tag, latest = _parts(await _get(backend, keys[1]))
            document["versions"]["1"]["created_by"] = "mallory"
            await _put(backend, keys[1], _record(document, tag, latest))
        finally:
            await backend.close()
        server.start()
        with httpx.Client(
            base_url=server.addr, headers={"X-Vault-Token": server.root_token}, timeout=30
        ) as client:
            assert _integrity_error(client.get("/v1/secret/metadata/old/1"))
            assert client.get("/v1/secret/metadata/old/2").status_code == 200
