"""The transit engine in process (httpx's ASGI transport) with a real core on SQLite.

Ciphertexts are checked against an independent AES-GCM / ChaCha20-Poly1305 /
HKDF implementation (``cryptography`` used directly), with the key material
read back through the barrier, so the wire format is Vault's byte for byte.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kustos.config import KeyProviderConfig, ServerConfig, StorageConfig
from kustos.crypto.envelope import context as envelope_context
from kustos.server import Core, create_app
from kustos.server.access import Authorizer
from kustos.server.engines.transit import TransitEngine
from kustos.server.tokens import TokenEntry
from tests.unit.server.conftest import FakeClock

ROOT = "hvs.unit-root-token"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _config(tmp_path: Path) -> ServerConfig:
    return ServerConfig(
        storage=StorageConfig(url=f"sqlite:{tmp_path / 'kustos.db'}"),
        keys=KeyProviderConfig(kind="local", key_file=tmp_path / "kustos.key"),
        dev=True,
    )


async def _open(
    tmp_path: Path, *, clock: FakeClock | None = None, authorizer: Authorizer | None = None
) -> tuple[Core, httpx.AsyncClient]:
    config = _config(tmp_path)
    kwargs: dict[str, Any] = {}
    if clock is not None:
        kwargs["clock"] = clock
    if authorizer is not None:
        kwargs["authorizer"] = authorizer
    core = await Core.open(config, **kwargs)
    await core.dev_bootstrap(root_token_id=ROOT)
    app = create_app(config, core=core)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://kustos",
        headers={"X-Vault-Token": ROOT},
    )
    assert (
        await client.post("/v1/sys/mounts/transit", json={"type": "transit"})
    ).status_code == 204
    return core, client


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Core, httpx.AsyncClient]]:
    core, client = await _open(tmp_path)
    try:
        yield core, client
    finally:
        await client.aclose()
        await core.close()


async def _material(core: Core, name: str, version: int) -> bytes:
    """The raw AES key of a version, read from storage and opened through the barrier."""
    mount = core.mounts.get("transit/")
    assert mount is not None
    blob = await core.storage.get(f"{mount.storage_prefix}key/{name}@{version}")
    assert blob is not None
    plain = await core.barrier.decrypt(
        blob, context=envelope_context("kustos/transit", mount.uuid, name, version)
    )
    return plain[1:33]


async def test_mount_lists_as_transit_and_unknown_types_are_refused(
    served: tuple[Core, httpx.AsyncClient],
) -> None:
    _, client = served
    mounts = (await client.get("/v1/sys/mounts")).json()
    assert mounts["data"]["transit/"]["type"] == "transit"
    bad = await client.post("/v1/sys/mounts/other", json={"type": "pki"})
    assert bad.status_code == 400 and "unknown secrets engine type 'pki'" in bad.json()["errors"][0]


@pytest.mark.parametrize("key_type", ["aes256-gcm96", "chacha20-poly1305"])
async def test_ciphertext_is_vaults_format(
    served: tuple[Core, httpx.AsyncClient], key_type: str
) -> None:
    core, client = served
    created = await client.post("/v1/transit/keys/app", json={"type": key_type})
    assert created.status_code == 200 and created.json()["data"]["type"] == key_type
    enc = (await client.post("/v1/transit/encrypt/app", json={"plaintext": b64(b"hello")})).json()[
        "data"
    ]
    assert enc["key_version"] == 1 and enc["ciphertext"].startswith("vault:v1:")
    blob = base64.b64decode(enc["ciphertext"].split(":", 2)[2])
    key = await _material(core, "app", 1)
    cipher = AESGCM(key) if key_type == "aes256-gcm96" else ChaCha20Poly1305(key)
    assert cipher.decrypt(blob[:12], blob[12:], None) == b"hello"
    # and a ciphertext made independently decrypts on the server
    theirs = "vault:v1:" + b64(b"\x01" * 12 + cipher.encrypt(b"\x01" * 12, b"from outside", None))
    dec = await client.post("/v1/transit/decrypt/app", json={"ciphertext": theirs})
    assert base64.b64decode(dec.json()["data"]["plaintext"]) == b"from outside"


async def test_derived_keys_use_hkdf_sha256_over_the_context(
    served: tuple[Core, httpx.AsyncClient],
) -> None:
    core, client = served
    info = (await client.post("/v1/transit/keys/d", json={"derived": True})).json()["data"]
    assert info["derived"] is True and info["kdf"] == "hkdf_sha256"
    missing = await client.post("/v1/transit/encrypt/d", json={"plaintext": b64(b"x")})
    assert (
        missing.status_code == 400
        and "missing 'context' for key derivation" in missing.json()["errors"][0]
    )
    ctx = b"tenant-a"
    enc = (
        await client.post(
            "/v1/transit/encrypt/d", json={"plaintext": b64(b"x"), "context": b64(ctx)}
        )
    ).json()
    blob = base64.b64decode(enc["data"]["ciphertext"].split(":", 2)[2])
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=ctx).derive(
        await _material(core, "d", 1)
    )
    assert AESGCM(derived).decrypt(blob[:12], blob[12:], None) == b"x"
    other = await client.post(
        "/v1/transit/decrypt/d",
        json={"ciphertext": enc["data"]["ciphertext"], "context": b64(b"tenant-b")},
    )
    assert other.status_code == 400 and other.json() == {
        "errors": ["cipher: message authentication failed"]
    }


async def test_tampered_and_malformed_ciphertexts(served: tuple[Core, httpx.AsyncClient]) -> None:
    _, client = served
    await client.post("/v1/transit/keys/k")
    ct = (await client.post("/v1/transit/encrypt/k", json={"plaintext": b64(b"secret")})).json()[
        "data"
    ]["ciphertext"]
    raw = bytearray(base64.b64decode(ct.split(":", 2)[2]))
    raw[-1] ^= 1
    tampered = await client.post(
        "/v1/transit/decrypt/k", json={"ciphertext": "vault:v1:" + b64(bytes(raw))}
    )
    assert tampered.status_code == 400 and tampered.json() == {
        "errors": ["cipher: message authentication failed"]
    }
    short = await client.post("/v1/transit/decrypt/k", json={"ciphertext": "vault:v1:AAAA"})
    assert short.json() == {"errors": ["cipher: message authentication failed"]}
    cases = {
        "nope": "invalid ciphertext: no prefix",
        "vault:v1": "invalid ciphertext: wrong number of fields",
        "vault:vx:AAAA": "invalid ciphertext: version number could not be decoded",
        "vault:v1:!!": "invalid ciphertext: could not decode base64",
        "vault:v9:" + ct.split(":", 2)[2]: "invalid ciphertext: version is too new",
    }
    for text, message in cases.items():
        answer = await client.post("/v1/transit/decrypt/k", json={"ciphertext": text})
        assert answer.status_code == 400 and answer.json() == {"errors": [message]}, text
    missing_key = await client.post("/v1/transit/decrypt/none", json={"ciphertext": ct})
    assert missing_key.status_code == 400 and missing_key.json() == {
        "errors": ["encryption key not found"]
    }


async def test_rotate_rewrap_min_versions_and_delete(
    served: tuple[Core, httpx.AsyncClient],
) -> None:
    _, client = served
    await client.post("/v1/transit/keys/r")
    old = (await client.post("/v1/transit/encrypt/r", json={"plaintext": b64(b"v1 data")})).json()[
        "data"
    ]["ciphertext"]
    rotated = (await client.post("/v1/transit/keys/r/rotate")).json()["data"]
    assert rotated["latest_version"] == 2 and set(rotated["keys"]) == {"1", "2"}
    new = (await client.post("/v1/transit/rewrap/r", json={"ciphertext": old})).json()["data"]
    assert new["ciphertext"].startswith("vault:v2:") and new["key_version"] == 2
    pinned = await client.post(
        "/v1/transit/encrypt/r", json={"plaintext": b64(b"p"), "key_version": 1}
    )
    assert pinned.json()["data"]["ciphertext"].startswith("vault:v1:")
    config = await client.post(
        "/v1/transit/keys/r/config", json={"min_decryption_version": 2, "min_encryption_version": 2}
    )
    assert config.status_code == 200 and config.json()["data"]["min_decryption_version"] == 2
    too_old = await client.post("/v1/transit/decrypt/r", json={"ciphertext": old})
    assert too_old.json() == {
        "errors": ["ciphertext or signature version is disallowed by policy (too old)"]
    }
    below = await client.post(
        "/v1/transit/encrypt/r", json={"plaintext": b64(b"p"), "key_version": 1}
    )
    assert (
        below.status_code == 400
        and "less than the minimum encryption key version" in below.json()["errors"][0]
    )
    ok = await client.post("/v1/transit/decrypt/r", json={"ciphertext": new["ciphertext"]})
    assert base64.b64decode(ok.json()["data"]["plaintext"]) == b"v1 data"
    beyond = await client.post("/v1/transit/keys/r/config", json={"min_decryption_version": 3})
    assert beyond.status_code == 400
    refused = await client.delete("/v1/transit/keys/r")
    assert refused.status_code == 400 and refused.json() == {
        "errors": ["deletion is not allowed for this key"]
    }
    await client.post("/v1/transit/keys/r/config", json={"deletion_allowed": True})
    assert (await client.delete("/v1/transit/keys/r")).status_code == 204
    assert (await client.get("/v1/transit/keys/r")).status_code == 404


async def test_batches_report_errors_per_item(served: tuple[Core, httpx.AsyncClient]) -> None:
    _, client = served
    await client.post("/v1/transit/keys/b")
    items = [{"plaintext": b64(f"item {i}".encode()), "reference": str(i)} for i in range(3)]
    enc = await client.post("/v1/transit/encrypt/b", json={"batch_input": items})
    results = enc.json()["data"]["batch_results"]
    assert enc.status_code == 200 and [r["reference"] for r in results] == ["0", "1", "2"]
    batch = [{"ciphertext": r["ciphertext"]} for r in results] + [
        {"ciphertext": "vault:v1:" + b64(b"\0" * 40)}
    ]
    dec = await client.post("/v1/transit/decrypt/b", json={"batch_input": batch})
    assert dec.status_code == 400
    out = dec.json()["data"]["batch_results"]
    assert [base64.b64decode(r["plaintext"]) for r in out[:3]] == [b"item 0", b"item 1", b"item 2"]
    assert out[3] == {"error": "cipher: message authentication failed"}


async def test_list_read_datakey_hmac_and_upsert(served: tuple[Core, httpx.AsyncClient]) -> None:
    _, client = served
    assert (await client.request("LIST", "/v1/transit/keys")).status_code == 404
    upsert = await client.post("/v1/transit/encrypt/auto", json={"plaintext": b64(b"x")})
    assert upsert.status_code == 200
    listed = await client.get("/v1/transit/keys", params={"list": "true"})
    assert listed.json()["data"]["keys"] == ["auto"]
    info = (await client.get("/v1/transit/keys/auto")).json()["data"]
    assert (
        info["type"] == "aes256-gcm96"
        and info["latest_version"] == 1
        and isinstance(info["keys"]["1"], int)
    )
    assert info["exportable"] is False and info["deletion_allowed"] is False
    dk = (await client.post("/v1/transit/datakey/plaintext/auto", json={"bits": 512})).json()[
        "data"
    ]
    assert len(base64.b64decode(dk["plaintext"])) == 64
    opened = await client.post("/v1/transit/decrypt/auto", json={"ciphertext": dk["ciphertext"]})
    assert opened.json()["data"]["plaintext"] == dk["plaintext"]
    wrapped = (await client.post("/v1/transit/datakey/wrapped/auto")).json()["data"]
    assert "plaintext" not in wrapped and wrapped["ciphertext"].startswith("vault:v1:")
    mac = (await client.post("/v1/transit/hmac/auto/sha2-512", json={"input": b64(b"msg")})).json()[
        "data"
    ]["hmac"]
    assert mac.startswith("vault:v1:") and len(base64.b64decode(mac.split(":", 2)[2])) == 64
    good = await client.post(
        "/v1/transit/verify/auto/sha2-512", json={"input": b64(b"msg"), "hmac": mac}
    )
    bad = await client.post(
        "/v1/transit/verify/auto/sha2-512", json={"input": b64(b"msh"), "hmac": mac}
    )
    assert good.json()["data"]["valid"] is True and bad.json()["data"]["valid"] is False
    refused = await client.post("/v1/transit/keys/x", json={"exportable": True})
    assert (
        refused.status_code == 400
        and "exportable=true is not supported" in refused.json()["errors"][0]
    )
    bad_name = await client.post("/v1/transit/keys/bad%20name")
    assert bad_name.status_code == 400


async def test_auto_rotate_period_rotates_on_next_use(tmp_path: Path) -> None:
    clock = FakeClock()
    core, client = await _open(tmp_path, clock=clock)
    try:
        await client.post("/v1/transit/keys/ar", json={"auto_rotate_period": "1h"})
        first = (await client.post("/v1/transit/encrypt/ar", json={"plaintext": b64(b"a")})).json()[
            "data"
        ]
        clock.advance(3601)
        second = (
            await client.post("/v1/transit/encrypt/ar", json={"plaintext": b64(b"a")})
        ).json()["data"]
        assert (first["key_version"], second["key_version"]) == (1, 2)
    finally:
        await client.aclose()
        await core.close()


async def test_every_operation_asks_the_authorizer(tmp_path: Path) -> None:
    asked: list[tuple[str, str]] = []

    def recording(token: TokenEntry, path: str, capability: str) -> bool:
        if path.startswith("transit/"):
            asked.append((path, capability))
            return capability != "delete"
        return "root" in token.policies

    core, client = await _open(tmp_path, authorizer=recording)
    try:
        if not isinstance(core.engines["transit"], TransitEngine):
            pytest.fail("transit is not registered")
        await client.post("/v1/transit/keys/p")
        ct = (await client.post("/v1/transit/encrypt/p", json={"plaintext": b64(b"x")})).json()[
            "data"
        ]["ciphertext"]
        await client.post("/v1/transit/decrypt/p", json={"ciphertext": ct})
        await client.get("/v1/transit/keys/p")
        await client.request("LIST", "/v1/transit/keys")
        denied = await client.delete("/v1/transit/keys/p")
        assert denied.status_code == 403
        assert asked == [
            ("transit/keys/p", "create"),
            ("transit/encrypt/p", "update"),
            ("transit/decrypt/p", "update"),
            ("transit/keys/p", "read"),
            ("transit/keys", "list"),
            ("transit/keys/p", "delete"),
        ]
    finally:
        await client.aclose()
        await core.close()


async def test_barrier_rewrap_moves_key_records_and_they_keep_working(
    served: tuple[Core, httpx.AsyncClient],
) -> None:
    core, client = served
    await client.post("/v1/transit/keys/rw")
    ct = (await client.post("/v1/transit/encrypt/rw", json={"plaintext": b64(b"kept")})).json()[
        "data"
    ]["ciphertext"]
    assert (await client.post("/v1/sys/rotate")).status_code in (200, 204)
    report = (await client.post("/v1/sys/rewrap", json={})).json()["data"]
    assert report["rewrapped"] >= 1 and report["failed"] == 0
    mount = core.mounts.get("transit/")
    assert mount is not None
    record = await core.storage.get(f"{mount.storage_prefix}key/rw@1")
    assert record is not None and int.from_bytes(record[4:8], "big") == core.barrier.active_version
    dec = await client.post("/v1/transit/decrypt/rw", json={"ciphertext": ct})
    assert base64.b64decode(dec.json()["data"]["plaintext"]) == b"kept"
    # a key record moved to another name does not open there
    await client.post("/v1/transit/keys/other")
    async with core.storage.transaction() as tx:
        await tx.put(f"{mount.storage_prefix}key/other@1", record)
    core.cache.clear()
    moved = await client.post("/v1/transit/encrypt/other", json={"plaintext": b64(b"x")})
    assert moved.status_code == 500 and "integrity check failed" in moved.json()["errors"][0]
