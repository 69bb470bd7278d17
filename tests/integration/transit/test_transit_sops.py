"""sops files with an ``hc_vault`` recipient on a Kustos server's transit engine, end to end.

``kustos encrypt --hc-vault-transit <addr>/v1/transit/keys/<name>`` with
``VAULT_ADDR``/``VAULT_TOKEN`` set, then ``kustos decrypt``, both as real
processes. The ``sops.hc_vault`` entry is checked to carry sops's fields, and
the file is also opened the way the sops binary does it (transit decrypt of
``enc`` over plain HTTP, then AES-256-GCM of a value with its path as AAD),
independently of Kustos's sops code.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from ruamel.yaml import YAML

from tests.support.server import RunningServer

pytestmark = pytest.mark.slow

KUSTOS = str(Path(sys.executable).with_name("kustos"))
_VALUE = re.compile(
    r"^ENC\[AES256_GCM,data:(?P<data>[^,]*),iv:(?P<iv>[^,]+),tag:(?P<tag>[^,]+),type:(?P<type>\w+)\]$"
)


def run(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([KUSTOS, *args], env=env, capture_output=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"kustos {' '.join(args)} failed: {done.stderr.decode()}")
    return done


@pytest.fixture
def sops_key(transit_server: RunningServer) -> str:
    name = f"sops-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{transit_server.addr}/v1/transit/keys/{name}",
        headers={"X-Vault-Token": transit_server.root_token},
    )
    assert response.status_code == 200
    return name


@pytest.fixture
def env(transit_server: RunningServer, tmp_path: Path) -> dict[str, str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "VAULT_", "KUSTOS_"))
    }
    return {
        **clean,
        "HOME": str(tmp_path),
        "VAULT_ADDR": transit_server.addr,
        "VAULT_TOKEN": transit_server.root_token,
    }


def _sops_decrypt_value(text: str, data_key: bytes, path: list[str]) -> str:
    """Decrypt one ``ENC[AES256_GCM,...]`` value as sops does (AAD = path components joined by ':' plus ':')."""
    match = _VALUE.match(text)
    assert match is not None, text
    data, iv, tag = (base64.b64decode(match[g]) for g in ("data", "iv", "tag"))
    aad = ("".join(p + ":" for p in path)).encode()
    return AESGCM(data_key).decrypt(iv, data + tag, aad).decode()


def test_encrypt_then_decrypt_with_hc_vault_transit(
    transit_server: RunningServer, sops_key: str, env: dict[str, str], tmp_path: Path
) -> None:
    uri = f"{transit_server.addr}/v1/transit/keys/{sops_key}"
    plain = tmp_path / "values.yaml"
    plain.write_text("db:\n  user: app\n  password: hunter2  # rotate monthly\nreplicas: 3\n")
    encrypted = tmp_path / "values.enc.yaml"
    encrypted.write_bytes(run("encrypt", "--hc-vault-transit", uri, str(plain), env=env).stdout)
    text = encrypted.read_text()
    assert "hunter2" not in text and "# rotate monthly" in text

    doc = YAML(typ="safe").load(text)
    [entry] = doc["sops"]["hc_vault"]
    assert set(entry) == {"vault_address", "engine_path", "key_name", "created_at", "enc"}
    assert entry["vault_address"] == transit_server.addr
    assert entry["engine_path"] == "transit" and entry["key_name"] == sops_key
    assert re.fullmatch(r"vault:v1:[A-Za-z0-9+/]+={0,2}", entry["enc"])
    datetime.strptime(entry["created_at"], "%Y-%m-%dT%H:%M:%SZ")

    assert run("decrypt", str(encrypted), env=env).stdout.decode() == plain.read_text()

    # what a sops binary pointed at this server does: transit decrypt of enc, then AES-GCM per value
    answer = httpx.post(
        f"{entry['vault_address']}/v1/{entry['engine_path']}/decrypt/{entry['key_name']}",
        json={"ciphertext": entry["enc"]},
        headers={"X-Vault-Token": transit_server.root_token},
    )
    assert answer.status_code == 200
    data_key = base64.b64decode(answer.json()["data"]["plaintext"])
    assert len(data_key) == 32
    assert _sops_decrypt_value(doc["db"]["password"], data_key, ["db", "password"]) == "hunter2"


def test_rotated_key_still_decrypts_and_bad_tokens_fail_clearly(
    transit_server: RunningServer, sops_key: str, env: dict[str, str], tmp_path: Path
) -> None:
    uri = f"{transit_server.addr}/v1/transit/keys/{sops_key}"
    plain = tmp_path / "s.json"
    plain.write_text('{"token": "s3cr3t-value"}')
    encrypted = tmp_path / "s.enc.json"
    encrypted.write_bytes(run("encrypt", "--hc-vault-transit", uri, str(plain), env=env).stdout)
    headers = {"X-Vault-Token": transit_server.root_token}
    assert (
        httpx.post(
            f"{transit_server.addr}/v1/transit/keys/{sops_key}/rotate", headers=headers
        ).status_code
        == 200
    )
    assert b"s3cr3t-value" in run("decrypt", str(encrypted), env=env).stdout

    refused = run(
        "decrypt", str(encrypted), env={**env, "VAULT_TOKEN": "hvs.not-a-token"}, check=False
    )
    assert refused.returncode != 0 and b"s3cr3t-value" not in refused.stdout + refused.stderr
    assert b"permission denied" in b" ".join(refused.stderr.split())

    # once old versions are retired the file no longer opens: min_decryption_version is enforced
    config = httpx.post(
        f"{transit_server.addr}/v1/transit/keys/{sops_key}/config",
        json={"min_decryption_version": 2},
        headers=headers,
    )
    assert config.status_code == 200
    retired = run("decrypt", str(encrypted), env=env, check=False)
    assert retired.returncode != 0 and b"s3cr3t-value" not in retired.stdout
    assert b"disallowed by policy (too old)" in b" ".join(retired.stderr.split())
