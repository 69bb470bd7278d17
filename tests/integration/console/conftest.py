"""A real ``kustos server`` set up for the console tests: an audit file, policies, users, an AppRole.

:func:`console_server` (module-scoped) starts ``kustos server --dev`` with
the access log on at debug level (so the "no value in the server log" check
reads everything the server logs), enables a file audit device and creates,
through the API as root:

* policies ``editor`` (everything under ``secret/``, the mount list, the
  audit search), ``reader`` (read and list only), ``writeonly`` (create and
  update on ``secret/data/wo/*``, nothing else);
* a userpass user (``editor``) and an AppRole role (``reader``);
* tokens for ``reader`` and ``writeonly``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import RunningServer, start_server

EDITOR_POLICY = """
path "secret/*" { capabilities = ["create", "read", "update", "patch", "delete", "list"] }
path "sys/mounts" { capabilities = ["read"] }
path "sys/audit" { capabilities = ["read", "sudo"] }
path "sys/policies/acl" { capabilities = ["list"] }
path "sys/policies/acl/*" { capabilities = ["read"] }
"""
READER_POLICY = """
path "secret/data/*" { capabilities = ["read"] }
path "secret/subkeys/*" { capabilities = ["read"] }
path "secret/metadata/*" { capabilities = ["read", "list"] }
path "secret/metadata/" { capabilities = ["list"] }
path "sys/mounts" { capabilities = ["read"] }
"""
WRITEONLY_POLICY = """
path "secret/data/wo/*" { capabilities = ["create", "update"] }
"""


@dataclass
class ConsoleServer:
    """The running server, a root API client and the credentials the tests log in with."""

    server: RunningServer
    audit_file: Path
    api: httpx.Client = field(repr=False)
    userpass: tuple[str, str] = field(repr=False)
    approle: tuple[str, str] = field(repr=False)
    reader_token: str = field(repr=False)
    writeonly_token: str = field(repr=False)

    @property
    def url(self) -> str:
        return self.server.addr

    def write(self, path: str, data: dict[str, Any], *, reason: str = "") -> int:
        """Write a version of ``secret/<path>`` as root; returns the version number."""
        response = self.api.post(
            f"/v1/secret/data/{path}",
            json={"data": data},
            headers={"X-Kustos-Reason": reason} if reason else {},
        )
        response.raise_for_status()
        return int(response.json()["data"]["version"])

    def read(self, path: str, version: int = 0) -> dict[str, Any]:
        response = self.api.get(
            f"/v1/secret/data/{path}", params={"version": version} if version else None
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
        return data

    def metadata(self, path: str) -> dict[str, Any]:
        response = self.api.get(f"/v1/secret/metadata/{path}")
        response.raise_for_status()
        meta: dict[str, Any] = response.json()["data"]
        return meta

    def token(self, policies: list[str]) -> str:
        response = self.api.post("/v1/auth/token/create", json={"policies": policies, "ttl": "1h"})
        response.raise_for_status()
        return str(response.json()["auth"]["client_token"])

    def token_valid(self, token: str) -> bool:
        response = httpx.get(
            f"{self.url}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token}
        )
        return response.status_code == 200

    def logs(self) -> str:
        return self.server.stdout() + self.server.stderr()


def _setup(api: httpx.Client, audit_file: Path) -> tuple[tuple[str, str], tuple[str, str]]:
    def ok(response: httpx.Response) -> httpx.Response:
        assert response.status_code < 300, response.text
        return response

    ok(
        api.put(
            "/v1/sys/audit/file", json={"type": "file", "options": {"file_path": str(audit_file)}}
        )
    )
    for name, text in (
        ("editor", EDITOR_POLICY),
        ("reader", READER_POLICY),
        ("writeonly", WRITEONLY_POLICY),
    ):
        ok(api.put(f"/v1/sys/policies/acl/{name}", json={"policy": text}))
    ok(api.post("/v1/sys/auth/userpass", json={"type": "userpass"}))
    password = secrets.token_urlsafe(12)
    ok(
        api.post(
            "/v1/auth/userpass/users/alice", json={"password": password, "token_policies": "editor"}
        )
    )
    ok(api.post("/v1/sys/auth/approle", json={"type": "approle"}))
    ok(api.post("/v1/auth/approle/role/ci", json={"token_policies": ["reader"]}))
    role_id = ok(api.get("/v1/auth/approle/role/ci/role-id")).json()["data"]["role_id"]
    secret_id = ok(api.post("/v1/auth/approle/role/ci/secret-id")).json()["data"]["secret_id"]
    return ("alice", password), (role_id, secret_id)


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """A dev server with the access log on (debug), an audit file, policies, a user and an AppRole."""
    base = tmp_path_factory.mktemp("console")
    with start_server(base, "--access-log", "--log-level", "debug") as server:
        audit_file = base / "audit.log"
        with httpx.Client(
            base_url=server.addr, headers={"X-Vault-Token": server.root_token}, timeout=30
        ) as api:
            userpass, approle = _setup(api, audit_file)
            console = ConsoleServer(
                server=server,
                audit_file=audit_file,
                api=api,
                userpass=userpass,
                approle=approle,
                reader_token="",
                writeonly_token="",
            )
            console.reader_token = console.token(["reader"])
            console.writeonly_token = console.token(["writeonly"])
            yield console
