"""Transit key material is never stored in plaintext: the raw SQLite files are searched for it.

A real server creates keys (and rotates one); the SQLite database and its
``-wal`` file are read while it runs and after it stops. The key material is
then read back the legitimate way (the barrier, in process, with the data
directory's key file) and searched for as raw bytes, hex and base64. The
search is shown to work: the key *names*, stored in clear, are found.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import httpx

from kustos.config import KeyProviderConfig, ServerConfig, StorageConfig
from kustos.crypto.envelope import context
from kustos.server import Core
from tests.support.server import start_server


def _files(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("kustos.db*")))


def _forms(secret: bytes) -> list[bytes]:
    forms = [secret, secret.hex().encode(), secret.hex().upper().encode()]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret)
        forms.append(encoded[-(-shift * 8 // 6) : (shift + len(secret)) * 8 // 6])
    return forms


async def test_key_material_is_not_stored_in_plaintext(tmp_path: Path) -> None:
    names = [f"at-rest-{uuid.uuid4().hex[:8]}", f"at-rest-{uuid.uuid4().hex[:8]}"]
    with start_server(tmp_path) as server:
        headers = {"X-Vault-Token": server.root_token}
        with httpx.Client(base_url=server.addr, headers=headers, timeout=10.0) as http:
            assert http.post("/v1/sys/mounts/transit", json={"type": "transit"}).status_code == 204
            for name in names:
                assert http.post(f"/v1/transit/keys/{name}").status_code == 200
            assert http.post(f"/v1/transit/keys/{names[0]}/rotate").status_code == 200
            probe = base64.b64encode(b"canary-" + uuid.uuid4().hex.encode()).decode()
            assert (
                http.post(f"/v1/transit/encrypt/{names[0]}", json={"plaintext": probe}).status_code
                == 200
            )
        running = _files(server.data_dir)
    stopped = _files(server.data_dir)

    config = ServerConfig(
        storage=StorageConfig(url=f"sqlite:{server.data_dir / 'kustos.db'}"),
        keys=KeyProviderConfig(kind="local", key_file=server.data_dir / "kustos.key"),
    )
    core = await Core.open(config)
    materials: list[bytes] = []
    try:
        mount = core.mounts.get("transit/")
        assert mount is not None
        for name, versions in ((names[0], (1, 2)), (names[1], (1,))):
            for version in versions:
                blob = await core.storage.get(f"{mount.storage_prefix}key/{name}@{version}")
                assert blob is not None
                plain = await core.barrier.decrypt(
                    blob, context=context("kustos/transit", mount.uuid, name, version)
                )
                materials += [plain[1:33], plain[33:65]]  # the encryption key and the HMAC key
    finally:
        await core.close()

    assert len(set(materials)) == 6
    for name in names:
        assert name.encode() in running and name.encode() in stopped  # the search itself works
    for material in materials:
        for form in _forms(material):
            assert form not in running and form not in stopped
    assert base64.b64decode(probe) not in running + stopped  # transit never stores the data itself
