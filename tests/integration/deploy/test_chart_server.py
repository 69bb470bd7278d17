"""The chart's server container, run for real: its rendered command, probe and the walk-through's steps.

No kubelet here, so the pod cannot run; what it would run can. Each test
renders the chart with some values, takes the StatefulSet's container
``args`` as they are (only the listen address, the port and the paths of
its volumes are moved to this machine), starts ``kustos server`` with them
and asks the rendered readiness probe's path, then does what
``docs/kubernetes.md`` tells a user to do next (init, unseal, enable
``secret/``, write and read a secret) with the real CLI.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.server.test_server_tls_pkcs11 import _self_signed
from tests.support.chart import render
from tests.support.server import free_port
from tests.support.softhsm import create_token, softhsm_missing

KUSTOS = str(Path(sys.executable).parent / "kustos")


def _server_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (server,) = [o for o in objects if o["kind"] == "StatefulSet"]
    (container,) = server["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _local_args(container: dict[str, Any], root: Path, port: int) -> list[str]:
    """The rendered args with the pod's paths and address moved here (nothing else changes)."""
    moved = []
    for arg in container["args"]:
        arg = arg.replace("--host=0.0.0.0", "--host=127.0.0.1")
        arg = arg.replace("--port=8200", f"--port={port}")
        arg = arg.replace("=/data", f"={root / 'data'}").replace("=/keys/", f"={root / 'keys'}/")
        arg = arg.replace("=/tls/", f"={root / 'tls'}/")
        moved.append(arg)
    return moved


class _Server:
    def __init__(self, args: list[str], root: Path, env: dict[str, str] | None = None) -> None:
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "home").mkdir(exist_ok=True)
        self.root = root
        self.env = (
            {k: v for k, v in os.environ.items() if not k.startswith(("KUSTOS_", "VAULT_"))}
            | {"HOME": str(root / "home")}
            | (env or {})
        )
        assert args[0] == "server"
        self.err = (root / "server.err").open("wb")
        self.process = subprocess.Popen(
            [KUSTOS, *args], env=self.env, stdout=subprocess.DEVNULL, stderr=self.err
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.err.close()

    def cli(self, addr: str, *args: str, token: str | None = None) -> str:
        env = self.env | {"KUSTOS_ADDR": addr} | ({"KUSTOS_TOKEN": token} if token else {})
        result = subprocess.run(
            [KUSTOS, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, f"kustos {' '.join(args)}: {result.stderr}"
        return result.stdout


@pytest.fixture
def servers() -> Iterator[list[_Server]]:
    started: list[_Server] = []
    yield started
    for server in started:
        server.stop()


def _probe(
    container: dict[str, Any], port: int, server: _Server, *, ca: Path | None = None
) -> httpx.Response:
    """GET the readiness probe's path, as the kubelet would, once the server answers."""
    probe = container["readinessProbe"]["httpGet"]
    assert probe["port"] == container["ports"][0]["name"]
    scheme = probe.get("scheme", "HTTP").lower()
    for _ in range(300):
        if server.process.poll() is not None:
            raise AssertionError((server.root / "server.err").read_text()[-3000:])
        try:
            return httpx.get(
                f"{scheme}://127.0.0.1:{port}{probe['path']}",
                timeout=2,
                verify=ssl.create_default_context(cafile=ca) if ca else True,
            )
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server never answered")


def test_shamir_server_is_ready_uninitialised_and_sealed_and_the_walk_through_works(
    tmp_path: Path, servers: list[_Server]
) -> None:
    container = _server_container(render("--set", "server.keyProvider=shamir"))
    assert "--key-provider=shamir" in container["args"]
    port = free_port()
    server = _Server(_local_args(container, tmp_path, port), tmp_path)
    servers.append(server)
    addr = f"http://127.0.0.1:{port}"
    # uninitialised: the probe succeeds (2xx), so rollout status finishes and the Service routes
    ready = _probe(container, port, server)
    assert ready.status_code == 204
    assert httpx.get(f"{addr}/v1/sys/health").status_code == 501  # without the probe's codes
    init = json.loads(
        server.cli(
            addr, "operator", "init", "--key-shares", "3", "--key-threshold", "2", "-o", "json"
        )
    )
    shares, root = init["keys"], init["root_token"]
    assert len(shares) == 3
    assert _probe(container, port, server).status_code == 204  # sealed: still ready
    for share in shares[:2]:
        server.cli(addr, "operator", "unseal", share)
    assert _probe(container, port, server).status_code == 200
    # the chart's server.initialKvMount: secret/ exists from init on, sealed as it was
    assert "--initial-kv-mount=secret" in container["args"]
    server.cli(addr, "kv", "put", "secret/team/db", "user=app", "password=s3cr3t", token=root)
    read = server.cli(addr, "kv", "get", "-field", "password", "secret/team/db", token=root)
    assert read.strip() == "s3cr3t"


def test_local_key_from_a_secret_is_the_key_file_and_auto_unseals(
    tmp_path: Path, servers: list[_Server]
) -> None:
    objects = render("--set", "server.local.keySecret=kustos-key")
    container = _server_container(objects)
    (server_set,) = [o for o in objects if o["kind"] == "StatefulSet"]
    (init,) = server_set["spec"]["template"]["spec"]["initContainers"]
    # the init container's command, run here on the same paths moved under tmp_path
    (tmp_path / "key-secret").mkdir()
    (tmp_path / "keys").mkdir()
    secret_file = tmp_path / "key-secret" / "kustos.key"
    secret_file.write_bytes(b"l9Yj3rM0mS8QhZ3VxgYVbq1JbO6pD5B8cQ7m3yW2n4E=\n")
    secret_file.chmod(0o440)  # as a Secret volume under fsGroup: the server would refuse it
    command = [
        part.replace("/key-secret/", f"{tmp_path}/key-secret/").replace(
            "/keys/", f"{tmp_path}/keys/"
        )
        for part in init["command"]
    ]
    subprocess.run(command, check=True, timeout=30)
    assert (tmp_path / "keys" / "kustos.key").stat().st_mode & 0o777 == 0o600
    port = free_port()
    args = _local_args(container, tmp_path, port)
    assert f"--key-file={tmp_path}/keys/kustos.key" in args
    server = _Server(args, tmp_path)
    servers.append(server)
    addr = f"http://127.0.0.1:{port}"
    assert _probe(container, port, server).status_code == 204
    root = json.loads(server.cli(addr, "operator", "init", "-o", "json"))["root_token"]
    assert _probe(container, port, server).status_code == 200  # local: unsealed at once
    mounts = json.loads(server.cli(addr, "secrets", "list", "-o", "json", token=root))
    assert mounts["secret/"]["options"] == {"version": "2"}
    assert not (tmp_path / "data" / "kustos.key").exists(), "the Secret's key must be the one used"


def test_without_an_initial_mount_the_walk_through_creates_it(
    tmp_path: Path, servers: list[_Server]
) -> None:
    container = _server_container(render("--set-string", "server.initialKvMount="))
    assert not [a for a in container["args"] if a.startswith("--initial-kv-mount")]
    port = free_port()
    server = _Server(_local_args(container, tmp_path, port), tmp_path)
    servers.append(server)
    addr = f"http://127.0.0.1:{port}"
    assert _probe(container, port, server).status_code == 204
    root = json.loads(server.cli(addr, "operator", "init", "-o", "json"))["root_token"]
    assert "secret/" not in json.loads(
        server.cli(addr, "secrets", "list", "-o", "json", token=root)
    )
    server.cli(addr, "secrets", "enable", "--path", "secret", "kv-v2", token=root)
    server.cli(addr, "kv", "put", "secret/team/db", "password=s3cr3t", token=root)
    read = server.cli(addr, "kv", "get", "-field", "password", "secret/team/db", token=root)
    assert read.strip() == "s3cr3t"


@pytest.mark.softhsm
def test_pkcs11_and_tls_values_run_with_a_real_hsm_over_https(
    tmp_path: Path, servers: list[_Server]
) -> None:
    reason = softhsm_missing()
    if reason is not None:
        pytest.skip(reason)
    token = create_token(tmp_path / "hsm", label="kustos-chart")
    objects = render(
        "--set", "server.keyProvider=pkcs11",
        "--set", f"server.pkcs11.module={token.module}",
        "--set", f"server.pkcs11.tokenLabel={token.token_label}",
        "--set", "server.pkcs11.pinSecret=hsm-pin",
        "--set", "server.tls.enabled=true",
    )  # fmt: skip
    container = _server_container(objects)
    (pin,) = [e for e in container["env"] if e["name"] == "KUSTOS_PKCS11_PIN"]
    assert pin["valueFrom"]["secretKeyRef"] == {"name": "hsm-pin", "key": "pin"}
    (tmp_path / "tls").mkdir()
    cert, key = _self_signed(tmp_path / "tls")
    cert.rename(tmp_path / "tls" / "tls.crt")
    key.rename(tmp_path / "tls" / "tls.key")
    ca = tmp_path / "tls" / "tls.crt"
    port = free_port()
    env = {"KUSTOS_PKCS11_PIN": token.pin, "SOFTHSM2_CONF": str(token.conf)}
    server = _Server(_local_args(container, tmp_path, port), tmp_path, env)
    servers.append(server)
    addr = f"https://127.0.0.1:{port}"
    assert _probe(container, port, server, ca=ca).status_code == 204  # over HTTPS
    init = json.loads(server.cli(addr, "operator", "init", "-o", "json", "--ca-cert", str(ca)))
    assert _probe(container, port, server, ca=ca).status_code == 200  # the HSM unsealed it
    trust = ssl.create_default_context(cafile=ca)
    status = httpx.get(f"{addr}/v1/sys/seal-status", verify=trust).json()
    assert status["type"] == "pkcs11" and status["sealed"] is False
    assert init["root_token"]
    assert not (tmp_path / "data" / "kustos.key").exists()
