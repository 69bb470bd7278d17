"""Interop with an independent implementation: the Python sops 1.18 package, in its own virtualenv.

sops 1.18 reads the sops 3 format Kustos writes (``ENC[...]`` values with
types, path AAD, the MAC over all values with ``lastmodified`` AAD) and Kustos
reads what sops 1.18 writes (its ``attention``/empty ``kms`` entries, version
1.18). Values are chosen inside what both accept: sops 1.18 turns 0, 0.0 and
null into empty strings, so the documents avoid them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sops_support import TEST_FP

from kustos.gitops.sops import KeyServices, PgpKey, decrypt_file, encrypt_file, store_for

pytestmark = pytest.mark.slow

YAML = b"""\
# comment kept
db:
    user: app
    password: "hunter2: x"
    port: 5432
    ratio: 1.5
    enabled: true
    hosts:
        - a.example
        - b.example
public_unencrypted: clear
"""
JSON = b'{"db": {"user": "app", "password": "hunter2", "port": 5432, "flags": [true, false]}, "n": 2.5}'


def _sops(exe: Path, *args: str, env: dict[str, str]) -> bytes:
    done = subprocess.run([str(exe), *args], env=env, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.mark.parametrize(("name", "plain"), [("values.yaml", YAML), ("values.json", JSON)])
def test_sops118_decrypts_what_kustos_encrypts(
    name: str, plain: bytes, sops118: Path, pgp_env: dict[str, str], tmp_path: Path
) -> None:
    store = store_for(path=name)
    encrypted = encrypt_file(plain, store=store, key_groups=[[PgpKey(fp=TEST_FP)]],
                             services=KeyServices(env=pgp_env))  # fmt: skip
    path = tmp_path / name
    path.write_bytes(encrypted)
    out = _sops(sops118, "-d", str(path), env=pgp_env)
    expected = decrypt_file(encrypted, store=store, services=KeyServices(env=pgp_env)).tree
    if name.endswith(".json"):
        assert json.loads(out) == expected
    else:
        import yaml

        assert yaml.safe_load(out) == expected
        assert b"# comment kept" in out


@pytest.mark.parametrize(("name", "plain"), [("values.yaml", YAML), ("values.json", JSON)])
def test_kustos_decrypts_what_sops118_encrypts(
    name: str, plain: bytes, sops118: Path, pgp_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_bytes(plain)
    encrypted = _sops(sops118, "-e", "-p", TEST_FP, str(path), env=pgp_env)
    assert b"hunter2" not in encrypted and b"version" in encrypted
    store = store_for(path=name)
    result = decrypt_file(encrypted, store=store, services=KeyServices(env=pgp_env))
    if name.endswith(".json"):
        assert result.tree == json.loads(plain)
    else:
        import yaml

        assert result.tree == yaml.safe_load(plain)
