"""Fixtures for the KMS plugin against a real kube-apiserver + etcd.

:class:`PluginProcess` runs ``kustos kms-plugin`` (the console script) on a
socket under ``/tmp`` and can stop and start it again, as an outage would.
:class:`EncryptedCluster` is a :class:`~tests.support.kube.ControlPlane`
configured by ``kustos cluster encryption-config``'s builder to use that
socket, with helpers to write Secrets and read what etcd holds raw.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from kustos.cluster.encryption_configs import build_config, render_config
from kustos.cluster.formats import StoredFormat, classify
from kustos.errors import KustosError
from kustos.kmsplugin.backends.base import BackendStatus
from kustos.kmsplugin.clients import KmsPluginClient
from tests.support.kube import ControlPlane, require_assets

PROVIDER = "kustos"
PREFIX = f"k8s:enc:kms:v2:{PROVIDER}:".encode()


def _kustos() -> list[str]:
    script = Path(sys.executable).parent / "kustos"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kustos.cli.main"]


class PluginProcess:
    """``kustos kms-plugin --listen unix://<socket> <args>`` in a subprocess."""

    def __init__(
        self, socket_path: Path, args: Sequence[str], *, env: dict[str, str] | None = None
    ):
        self.socket_path = socket_path
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.log_path = socket_path.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, args: Sequence[str] | None = None) -> PluginProcess:
        if args is not None:
            self.args = list(args)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*_kustos(), "kms-plugin", "--listen", f"unix://{self.socket_path}", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"kms-plugin exited:\n{self.log()}")
            if self.socket_path.exists():
                with contextlib.suppress(KustosError):
                    if self.status().healthy:
                        return self
            if time.monotonic() > deadline:
                raise AssertionError(f"kms-plugin did not become healthy:\n{self.log()}")
            time.sleep(0.1)

    def status(self) -> BackendStatus:
        with KmsPluginClient(self.socket_path, timeout=5) as client:
            return client.status()[1]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


class EncryptedCluster:
    """A control plane whose Secrets are encrypted by the plugin on ``socket_path``."""

    def __init__(self, assets: Path, socket_path: Path) -> None:
        config = build_config(kms_socket=str(socket_path), kms_name=PROVIDER)
        self.plane = ControlPlane(assets, encryption_config=render_config(config))

    def __enter__(self) -> EncryptedCluster:
        self.plane.start()
        self.plane.ensure_namespace("kms")
        return self

    def __exit__(self, *exc: object) -> None:
        self.plane.stop()

    def write(self, name: str, value: str) -> httpx.Response:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": "kms"},
            "stringData": {"value": value},
        }
        return self.plane.request("POST", "/api/v1/namespaces/kms/secrets", json=body, timeout=20)

    def create(self, name: str, value: str) -> None:
        response = self.write(name, value)
        assert response.status_code == 201, response.text

    def read(self, name: str) -> str:
        found = self.plane.get(f"/api/v1/namespaces/kms/secrets/{name}")
        assert found is not None, f"secret {name} is gone"
        return base64.b64decode(found["data"]["value"]).decode()

    def raw(self, name: str) -> bytes | None:
        return self.plane.etcd_get(f"/registry/secrets/kms/{name}")

    def stored(self, name: str, value: str) -> StoredFormat:
        """The stored format of a Secret, after checking its value is not in etcd in any form."""
        raw = self.raw(name)
        assert raw is not None, f"{name} is not in etcd"
        assert raw.startswith(PREFIX), raw[:40]
        for form in (value.encode(), base64.b64encode(value.encode())):
            assert form not in raw
        return classify(raw)

    def restart_apiserver(self) -> None:
        """A new API server process: its DEK cache is empty, so reads need the plugin's Decrypt."""
        self.plane.stop_apiserver()
        self.plane.start_apiserver()


def wait_for_key(
    cluster: EncryptedCluster, key_id: str, *, prefix: str, timeout: float = 240
) -> int:
    """Write Secrets until one is stored under ``key_id``; every one must be encrypted. How many."""
    deadline = time.monotonic() + timeout
    written = 0
    while time.monotonic() < deadline:
        name = f"{prefix}-{written}"
        cluster.create(name, f"value of {name}")
        written += 1
        if cluster.stored(name, f"value of {name}").key_id == key_id:
            return written
        time.sleep(1)
    raise AssertionError(f"the API server never wrote with key {key_id} in {timeout}s")


@pytest.fixture
def assets() -> Path:
    return require_assets()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A private directory under /tmp (unix socket paths must stay under 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="kms-", dir="/tmp") as name:
        yield Path(name)


def dump(cluster: EncryptedCluster, plugin: PluginProcess) -> Any:
    """What to print when a test fails."""
    return f"plugin log:\n{plugin.log()}\napiserver log:\n{cluster.plane.log('kube-apiserver')}"
