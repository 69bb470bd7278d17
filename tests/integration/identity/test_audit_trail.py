"""Audit devices end to end on a real server: every route is recorded (request and response), the file
holds no secret value and no token, tampering is named by ``kustos audit verify``, and an unwritable
audit file makes the server refuse reads and writes (503) without changing the store."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hvac
import orjson
import pytest

from kustos.cli.main import app as cli_app
from kustos.config import KeyProviderConfig, ServerConfig, StorageConfig
from kustos.server import Core
from kustos.server.auditing import UNAUDITED
from kustos.server.engines.kv import KvEngine
from kustos.server.routes import build_apis
from kustos.store import SqliteBackend
from tests.support.cli import cli_runner
from tests.support.server import RunningServer, start_server

SECRET_VALUES = ("hunter2-audit-marker", "s3cr3t-patched-marker", "4711-8151")
PIN, PORT = 4711093582, 8151772046  # numbers long enough not to occur in a hex digest by chance


def _entries(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def _route_prefixes(tmp_path: Path) -> list[str]:
    """Every PathApi prefix the dispatcher routes to (the same build_apis the server uses)."""
    config = ServerConfig(
        storage=StorageConfig(url=f"sqlite:{tmp_path / 'walk.db'}"),
        keys=KeyProviderConfig(kind="local", key_file=tmp_path / "walk.key"),
        dev=True,
    )
    core = await Core.open(config)
    try:
        return [api.prefix for api in build_apis(core)]
    finally:
        await core.close()


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    base = tmp_path_factory.mktemp("audited")
    log = base / "logs" / "audit.log"
    log.parent.mkdir()
    with start_server(base) as server:
        vault = hvac.Client(url=server.addr, token=server.root_token)
        vault.sys.enable_audit_device(device_type="file", options={"file_path": str(log)})
        yield server, log


_TIMEOUT = 60
"""Seconds one probe may take: a hung route still fails, a loaded host does not (the first
``cert.pem`` may generate the RSA sealing key; with 10 s, two full-suite runs on a busy 2-core
machine timed out here while the test passed alone)."""


def _call(server: RunningServer, method: str, path: str, token: str | None, **kwargs: Any) -> str:
    request_id = str(uuid.uuid4())
    headers = {"X-Request-Id": request_id}
    if token:
        headers["X-Vault-Token"] = token
    if method == "STREAM":
        with httpx.stream(
            "GET", f"{server.addr}/v1/{path}", headers=headers, timeout=_TIMEOUT, **kwargs
        ) as response:
            response.close()
    else:
        httpx.request(
            method, f"{server.addr}/v1/{path}", headers=headers, timeout=_TIMEOUT, **kwargs
        )
    return request_id


async def test_every_route_writes_a_request_and_a_response_entry(
    audited: tuple[RunningServer, Path], tmp_path: Path
) -> None:
    server, log = audited
    root = server.root_token
    vault = hvac.Client(url=server.addr, token=root)
    vault.secrets.kv.v2.create_or_update_secret(
        path="walk/db", secret={"password": SECRET_VALUES[0]}
    )
    vault.sys.enable_secrets_engine("transit", path="transit")
    calls: dict[str, tuple[str, str]] = {}

    for prefix in await _route_prefixes(tmp_path):
        path = prefix if not prefix.endswith("/") else prefix + "walk-probe"
        if prefix.rstrip("/") in UNAUDITED:
            continue
        method = "STREAM" if prefix == "sys/events/" else "GET"
        extra: dict[str, Any] = {"params": {"prefix": "secret/"}} if method == "STREAM" else {}
        path = "sys/events/subscribe" if method == "STREAM" else path
        calls[_call(server, method, path, root, **extra)] = (method, path)
    kv_routes = [
        ("GET", "secret/data/walk/db"),
        ("POST", "secret/data/walk/db"),
        ("GET", "secret/metadata/walk/db"),
        ("LIST", "secret/metadata/walk"),
        ("GET", "secret/subkeys/walk/db"),
        ("POST", "secret/delete/walk/db"),
        ("POST", "secret/undelete/walk/db"),
        ("POST", "secret/destroy/walk/db"),
        ("GET", "secret/config"),
        ("DELETE", "secret/data/walk/db"),
        ("DELETE", "secret/metadata/walk/db"),
        ("GET", "secret/nothing"),
        ("POST", "transit/keys/walk"),
        ("GET", "transit/keys/walk"),
        ("GET", "no-such-mount/x"),
    ]
    assert {op for op in KvEngine.route("GET", "x/y").split(":")[:1]} == {"kv"}
    for method, path in kv_routes:
        body = (
            {"data": {"password": SECRET_VALUES[0]}, "versions": [1]} if method == "POST" else None
        )
        calls[_call(server, method, path, root, json=body)] = (method, path)
    calls[_call(server, "GET", "auth/token/lookup-self", "hvs.not-a-real-token")] = (
        "GET",
        "bad token",
    )
    calls[_call(server, "GET", "secret/data/../x", root)] = ("GET", "invalid path")

    by_id: dict[str, list[str]] = {}
    for entry in _entries(log)[1:]:
        by_id.setdefault(entry["request"]["id"], []).append(entry["type"])
    for request_id, (method, path) in calls.items():
        assert by_id.get(request_id) == ["request", "response"], (
            f"{method} {path}: {by_id.get(request_id)}"
        )
    skipped = _call(server, "GET", "sys/health", None)
    assert skipped not in {e["request"]["id"] for e in _entries(log)[1:]}


def test_no_secret_value_and_no_token_in_the_file(audited: tuple[RunningServer, Path]) -> None:
    server, log = audited
    vault = hvac.Client(url=server.addr, token=server.root_token)
    vault.secrets.kv.v2.create_or_update_secret(
        path="leak/db", secret={"password": SECRET_VALUES[0], "pin": PIN}
    )
    httpx.patch(
        f"{server.addr}/v1/secret/data/leak/db",
        headers={
            "X-Vault-Token": server.root_token,
            "Content-Type": "application/merge-patch+json",
        },
        content=orjson.dumps({"data": {"other": SECRET_VALUES[1], "port": PORT}}),
    )
    read = vault.secrets.kv.v2.read_secret_version(path="leak/db", raise_on_deleted_version=True)
    assert read["data"]["data"]["password"] == SECRET_VALUES[0]
    created = vault.auth.token.create(policies=["default"], ttl="5m")["auth"]
    child = hvac.Client(url=server.addr, token=created["client_token"])
    child.auth.token.lookup_self()
    vault.auth.token.lookup(created["client_token"])
    text = log.read_text()
    for needle in (*SECRET_VALUES, server.root_token, created["client_token"], str(PIN), str(PORT)):
        assert needle not in text, needle
    assert created["accessor"] in text  # accessors stay readable, by design
    hashed = vault.sys.calculate_hash(path="file", input_to_hash=SECRET_VALUES[0])["data"]["hash"]
    assert hashed.startswith("hmac-sha256:") and hashed in text
    reads = [
        e
        for e in _entries(log)[1:]
        if e["type"] == "response"
        and e["request"]["path"] == "secret/data/leak/db"
        and e["request"]["operation"] == "read"
    ]
    assert reads and reads[-1]["response"]["data"]["data"]["password"] == hashed
    assert (
        reads[-1]["auth"]["display_name"] == "root"
        and reads[-1]["request"]["remote_address"] == "127.0.0.1"
    )


@pytest.mark.parametrize("tamper", ["delete", "edit", "swap"])
def test_tampering_is_named_by_audit_verify(
    audited: tuple[RunningServer, Path], tmp_path: Path, tamper: str
) -> None:
    server, log = audited
    hvac.Client(url=server.addr, token=server.root_token).auth.token.lookup_self()
    runner = cli_runner()
    clean = runner.invoke(cli_app, ["audit", "verify", str(log)])
    assert clean.exit_code == 0, clean.stderr
    lines = log.read_bytes().splitlines(keepends=True)
    victim = len(lines) // 2  # 0-based index of the line we touch
    if tamper == "delete":
        del lines[victim]
    elif tamper == "edit":
        lines[victim] = (
            lines[victim].replace(b'"status":', b'"status": ', 1)
            if b'"status":' in lines[victim]
            else lines[victim].replace(b'"operation":"', b'"operation":"x', 1)
        )
    else:
        lines[victim], lines[victim + 1] = lines[victim + 1], lines[victim]
    copy = tmp_path / f"{tamper}.log"
    copy.write_bytes(b"".join(lines))
    result = runner.invoke(cli_app, ["audit", "verify", str(copy)])
    assert result.exit_code != 0
    assert f"line {victim + 1}:" in " ".join(result.stderr.split())


async def _snapshot(db: Path) -> dict[str, bytes]:
    backend = SqliteBackend(db)
    await backend.open()
    try:
        return {key: value async for key, value in backend.scan("")}
    finally:
        await backend.close()


async def test_unwritable_audit_file_refuses_reads_and_writes(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    with start_server(tmp_path / "srv") as server:
        vault = hvac.Client(url=server.addr, token=server.root_token)
        vault.secrets.kv.v2.create_or_update_secret(path="fc/db", secret={"password": "before"})
        vault.sys.enable_audit_device(device_type="file", options={"file_path": str(log)})
        headers = {"X-Vault-Token": server.root_token}
        assert httpx.get(f"{server.addr}/v1/secret/data/fc/db", headers=headers).status_code == 200
        if subprocess.run(["chattr", "+i", str(log)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        try:
            before = await _snapshot(server.data_dir / "kustos.db")
            entries_before = log.read_bytes()
            read = httpx.get(f"{server.addr}/v1/secret/data/fc/db", headers=headers)
            write = httpx.post(
                f"{server.addr}/v1/secret/data/fc/db",
                headers=headers,
                json={"data": {"password": "after"}},
            )
            token = httpx.post(
                f"{server.addr}/v1/auth/token/create",
                headers=headers,
                json={"policies": ["default"]},
            )
            policy = httpx.put(
                f"{server.addr}/v1/sys/policies/acl/x",
                headers=headers,
                json={"policy": 'path "a" { capabilities = ["read"] }'},
            )
            for response in (read, write, token, policy):
                assert response.status_code == 503
                assert "audit" in response.json()["errors"][0]
            assert "before" not in read.text
            assert await _snapshot(server.data_dir / "kustos.db") == before
            assert log.read_bytes() == entries_before
        finally:
            subprocess.run(["chattr", "-i", str(log)], check=True)
        answer = httpx.get(f"{server.addr}/v1/secret/data/fc/db", headers=headers)
        assert answer.status_code == 200 and answer.json()["data"]["data"] == {"password": "before"}


async def test_device_that_cannot_be_reopened_at_start_fails_closed(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    with start_server(tmp_path / "srv") as server:
        vault = hvac.Client(url=server.addr, token=server.root_token)
        vault.sys.enable_audit_device(
            device_type="file", description="main", options={"file_path": str(log)}
        )
        assert vault.sys.list_enabled_audit_devices()["data"]["file/"]["options"][
            "file_path"
        ] == str(log)
        vault.secrets.kv.v2.create_or_update_secret(path="fc/db", secret={"password": "kept"})
        server.stop()
        log.unlink()
        log.symlink_to("/dev/full")  # every write fails with ENOSPC, even as root
        server.start()
        headers = {"X-Vault-Token": server.root_token}
        refused = httpx.get(f"{server.addr}/v1/secret/data/fc/db", headers=headers)
        assert refused.status_code == 503 and "audit" in refused.json()["errors"][0]
        server.stop()
        log.unlink()
        server.start()  # a fresh file: the chain starts again, requests go through
        assert httpx.get(f"{server.addr}/v1/secret/data/fc/db", headers=headers).json()["data"][
            "data"
        ] == {"password": "kept"}
        assert _entries(log)[0]["type"] == "genesis"
