"""Fixtures for the operator's integration tests: kmock as the Kubernetes API, the operator in-process.

The operator runs through :func:`kustos.operator.main.serve` (real kopf, real
HTTP) against kmock's Kubernetes emulator; tests create and edit objects over
HTTP like kubectl would and read the results back the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import kmock
import kopf
import pytest

from kustos.kube import Connection
from kustos.operator.main import OperatorOptions, serve

_RESOURCES = {
    "v1/secrets": ("Secret", True, ()),
    "v1/configmaps": ("ConfigMap", True, ()),
    "v1/events": ("Event", True, ()),
    "v1/namespaces": ("Namespace", False, ()),
    "apps/v1/deployments": ("Deployment", True, ()),
    "apps/v1/statefulsets": ("StatefulSet", True, ()),
    "apps/v1/daemonsets": ("DaemonSet", True, ()),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, ()),
    "kustos.io/v1/externalsecrets": ("ExternalSecret", True, ("status",)),
    "kustos.io/v1/secretstores": ("SecretStore", True, ("status",)),
    "kustos.io/v1/clustersecretstores": ("ClusterSecretStore", False, ("status",)),
    "kustos.io/v1/sealedsecrets": ("SealedSecret", True, ("status",)),
    "bitnami.com/v1alpha1/sealedsecrets": ("SealedSecret", True, ("status",)),
}

_VERBS = {"get", "list", "watch", "create", "patch", "delete"}


@pytest.fixture()
def cluster(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    """kmock with the resources the operator watches declared for API discovery."""
    for key, (kind, namespaced, subresources) in _RESOURCES.items():
        kmock.resources[key] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, verbs=_VERBS, subresources=set(subresources)
        )
    return kmock


class Api:
    """What a test does with kubectl, over HTTP to the emulator."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    @staticmethod
    def _path(api_version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{plural}"
        return base + (f"/{name}" if name else "")

    async def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        body.setdefault("metadata", {}).setdefault("uid", str(uuid.uuid4()))
        meta = body["metadata"]
        response = await self.http.post(
            self._path(body["apiVersion"], plural, meta.get("namespace")), json=body
        )
        assert response.status_code < 300, response.text
        return dict(response.json())

    async def get(
        self, api_version: str, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        response = await self.http.get(self._path(api_version, plural, namespace, name))
        if response.status_code == 404:
            return None
        assert response.status_code < 300, response.text
        return dict(response.json())

    async def patch(
        self, api_version: str, plural: str, namespace: str | None, name: str, patch: dict[str, Any]
    ) -> None:
        response = await self.http.patch(
            self._path(api_version, plural, namespace, name),
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert response.status_code < 300, response.text

    async def delete(self, api_version: str, plural: str, namespace: str | None, name: str) -> None:
        response = await self.http.delete(self._path(api_version, plural, namespace, name))
        assert response.status_code < 300, response.text

    async def list(
        self, api_version: str, plural: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        response = await self.http.get(self._path(api_version, plural, namespace))
        assert response.status_code < 300, response.text
        return list(response.json()["items"])

    async def events(self, namespace: str, *, reason: str | None = None) -> list[dict[str, Any]]:
        items = await self.list("v1", "events", namespace)
        return [e for e in items if reason is None or e.get("reason") == reason]


@pytest.fixture()
async def api(cluster: kmock.KubernetesEmulator) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=str(cluster.url).rstrip("/"), timeout=10) as http:
        yield Api(http)


def _fast(settings: kopf.OperatorSettings) -> None:
    settings.watching.server_timeout = 10
    settings.watching.client_timeout = 15
    settings.watching.reconnect_backoff = 0.05
    settings.queueing.idle_timeout = 0.5
    settings.queueing.exit_timeout = 0.5
    settings.process.ultimate_exiting_timeout = None  # never SIGKILL the test process


RunOperator = Callable[..., contextlib.AbstractAsyncContextManager[None]]


@pytest.fixture()
def run_operator(cluster: kmock.KubernetesEmulator) -> RunOperator:
    """``async with run_operator(**options):`` runs the real operator against the emulator.

    The operator gets its own thread and event loop (as kopf's ``KopfRunner``
    does), so kopf's shutdown never waits on the emulator's server tasks.
    """

    @contextlib.asynccontextmanager
    async def _run(**overrides: Any) -> AsyncIterator[None]:
        options = OperatorOptions(retry_backoff=(0.2, 1.0), extra_settings=(_fast,), **overrides)
        connection = Connection(server=str(cluster.url).rstrip("/"))
        started = threading.Event()
        holder: dict[str, Any] = {}

        def _target() -> None:
            loop = asyncio.new_event_loop()
            holder["loop"] = loop
            try:
                stop = asyncio.Event()
                holder["stop"] = stop
                started.set()
                loop.run_until_complete(
                    serve(connection=connection, options=options, stop_flag=stop)
                )
            except BaseException as exc:
                holder["error"] = exc
            finally:
                started.set()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=_target, name="kustos-operator-under-test")
        thread.start()
        await asyncio.to_thread(started.wait, 10)
        try:
            yield
        finally:
            if "stop" in holder and thread.is_alive():
                holder["loop"].call_soon_threadsafe(holder["stop"].set)
            await asyncio.to_thread(thread.join, 20)
            assert not thread.is_alive(), "the operator did not stop"
            if "error" in holder:
                raise holder["error"]

    return _run


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after a generous timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await check():
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture()
def wait() -> Callable[..., Awaitable[None]]:
    """The :func:`eventually` helper, as a fixture."""
    return eventually


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's server (real HTTP, Secrets Manager emulated) on a free loopback port."""
    program = Path(sys.executable).with_name("moto_server")
    if not program.exists():
        pytest.skip("moto_server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    process = subprocess.Popen([str(program), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
