"""``kustos transit ...`` as a real process against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.server import RunningServer

pytestmark = pytest.mark.slow

KUSTOS = str(Path(sys.executable).with_name("kustos"))


def run(
    *args: str, env: dict[str, str], stdin: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(
        [KUSTOS, "transit", *args], env=env, input=stdin, capture_output=True, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"kustos transit {' '.join(args)} failed: {done.stderr.decode()}")
    return done


@pytest.fixture
def env(transit_server: RunningServer, tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "KUSTOS_"))}
    return {
        **clean,
        "HOME": str(tmp_path),
        "KUSTOS_ADDR": transit_server.addr,
        "KUSTOS_TOKEN": transit_server.root_token,
    }


def test_key_lifecycle_encrypt_decrypt_rotate_rewrap(env: dict[str, str], tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = json.loads(run("create-key", name, "-o", "json", env=env).stdout)
    assert created["name"] == name and created["latest_version"] == 1
    assert name in json.loads(run("list-keys", "-o", "json", env=env).stdout)

    ct = run("encrypt", name, "hello world", env=env).stdout.decode().strip()
    assert ct.startswith("vault:v1:")
    assert run("decrypt", name, ct, env=env).stdout == b"hello world"
    binary = bytes(range(256))
    from_stdin = run("encrypt", name, "-o", "json", env=env, stdin=binary).stdout
    ct_bin = json.loads(from_stdin)["ciphertext"]
    assert run("decrypt", name, ct_bin, env=env).stdout == binary
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"from a file")
    ct_file = run("encrypt", name, "--file", str(payload), env=env).stdout.decode().strip()
    assert json.loads(run("decrypt", name, ct_file, "-o", "json", env=env).stdout) == {
        "plaintext": "ZnJvbSBhIGZpbGU="
    }

    assert "latest_version" in run("rotate", name, "-o", "yaml", env=env).stdout.decode()
    rewrapped = run("rewrap", name, ct, ct_bin, env=env).stdout.decode().split()
    assert len(rewrapped) == 2 and all(c.startswith("vault:v2:") for c in rewrapped)
    run("config", name, "--min-decryption-version", "2", env=env)
    info = json.loads(run("read-key", name, "-o", "json", env=env).stdout)
    assert info["min_decryption_version"] == 2 and set(info["keys"]) == {"1", "2"}
    old = run("decrypt", name, ct, env=env, check=False)
    assert old.returncode == 1 and b"too old" in old.stderr
    assert run("decrypt", name, rewrapped[0], env=env).stdout == b"hello world"


def test_derived_keys_and_bad_input(env: dict[str, str]) -> None:
    name = f"cli-d-{uuid.uuid4().hex[:8]}"
    run("create-key", name, "--derived", "--type", "chacha20-poly1305", env=env)
    ct = (
        run("encrypt", name, "tenant data", "--context", "tenant-a", env=env)
        .stdout.decode()
        .strip()
    )
    assert run("decrypt", name, ct, "--context", "tenant-a", env=env).stdout == b"tenant data"
    wrong = run("decrypt", name, ct, "--context", "tenant-b", env=env, check=False)
    assert wrong.returncode == 1 and b"cipher: message authentication failed" in wrong.stderr
    garbage = run("decrypt", name, "not-a-ciphertext", env=env, check=False)
    assert garbage.returncode == 1 and b"invalid ciphertext: no prefix" in garbage.stderr
    bad_type = run("create-key", "x", "--type", "rsa-4096", env=env, check=False)
    assert bad_type.returncode == 1 and b"unknown key type 'rsa-4096'" in bad_type.stderr
