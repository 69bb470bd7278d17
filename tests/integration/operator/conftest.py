"""Fixtures for the controllers' integration tests: a real kube-apiserver, the controller as the chart's ServiceAccount.

The session's control plane (:mod:`tests.support.kube`: etcd, kube-apiserver
and the controller manager, so garbage collection works) gets the CRDs of
``deploy/crds/`` and the chart's RBAC applied once (:mod:`tests.support.chart`).
Each test works in a namespace of its own (``api.ns``), deleted afterwards.

The controller runs through :func:`kustos.operator.main.serve` (real kopf,
real HTTP) in a thread of its own, connected with a kubeconfig holding a
TokenRequest token of ``kustos-system/kustos-controller``: it has exactly the
chart's ClusterRole, so a missing verb fails the test. Tests act as the
admin (client certificate) over HTTP, like kubectl, and read results back.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import kopf
import pytest

from kustos.kube import load_kubeconfig
from kustos.operator.main import OperatorOptions, OperatorReport, serve
from tests.support.chart import controller_kubeconfig, install_controller_rbac, install_crds
from tests.support.kube import ControlPlane

COMPONENT = "kustos-operator"
"""``source.component`` of the Events the controllers post."""


@dataclass(frozen=True)
class Installed:
    """The control plane with the CRDs and the controller's RBAC in place."""

    plane: ControlPlane
    crds: list[str]


@pytest.fixture(scope="session")
def installed(control_plane: ControlPlane) -> Installed:
    """CRDs and the chart's controller RBAC, applied once per session."""
    crds = install_crds(control_plane)
    install_controller_rbac(control_plane)
    return Installed(plane=control_plane, crds=crds)


class Api:
    """What a test does with kubectl, as the cluster admin; ``ns`` is the test's own namespace."""

    def __init__(self, http: httpx.AsyncClient, plane: ControlPlane, ns: str) -> None:
        self.http = http
        self.plane = plane
        self.ns = ns
        self.namespaces = [ns]

    @staticmethod
    def _path(api_version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{plural}"
        return base + (f"/{name}" if name else "")

    def namespace(self, prefix: str) -> str:
        """Another fresh namespace (deleted with the test's own)."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.plane.ensure_namespace(name)
        self.namespaces.append(name)
        return name

    async def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        response = await self.http.post(  # Strict: a field the CRD would prune is an error
            self._path(body["apiVersion"], plural, meta.get("namespace")),
            json=body,
            params={"fieldValidation": "Strict"},
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
    ) -> dict[str, Any]:
        response = await self.http.patch(
            self._path(api_version, plural, namespace, name),
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
            params={"fieldValidation": "Strict"},
        )
        assert response.status_code < 300, response.text
        return dict(response.json())

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
        """The controllers' Events in ``namespace`` (not the controller manager's), oldest first."""
        items = await self.list("v1", "events", namespace)
        ours = [e for e in items if (e.get("source") or {}).get("component") == COMPONENT]
        ours.sort(key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))
        return [e for e in ours if reason is None or e.get("reason") == reason]


@pytest.fixture()
async def api(installed: Installed) -> AsyncIterator[Api]:
    plane = installed.plane
    ns = f"t-{uuid.uuid4().hex[:8]}"
    plane.ensure_namespace(ns)
    async with plane.async_http(timeout=15) as http:
        client = Api(http, plane, ns)
        try:
            yield client
        finally:
            for name in client.namespaces:  # the controller manager empties and removes them
                await http.delete(f"/api/v1/namespaces/{name}")


def _fast(settings: kopf.OperatorSettings) -> None:
    settings.watching.server_timeout = 10
    settings.watching.client_timeout = 15
    settings.watching.reconnect_backoff = 0.05
    settings.queueing.idle_timeout = 0.5
    settings.queueing.exit_timeout = 0.5
    settings.process.ultimate_exiting_timeout = None  # never SIGKILL the test process


@dataclass
class Running:
    """The controllers under test; ``report`` is what :func:`serve` returned, once they stopped."""

    report: OperatorReport | None = None


RunOperator = Callable[..., contextlib.AbstractAsyncContextManager[Running]]


@pytest.fixture()
def controller_config(installed: Installed, tmp_path: Path) -> Path:
    """A kubeconfig acting as the chart's controller ServiceAccount."""
    return controller_kubeconfig(installed.plane, tmp_path / "controller.kubeconfig")


@pytest.fixture()
def run_operator(controller_config: Path, request: pytest.FixtureRequest) -> RunOperator:
    """``async with run_operator(**options):`` runs the real controllers against the real API server.

    They connect as the chart's ServiceAccount unless ``kubeconfig=`` names
    another file; they get their own thread and event loop (as kopf's
    ``KopfRunner`` does). The block starts once kopf reports ready.

    In a test using ``api`` they watch only that test's namespaces (those
    made so far): objects other tests left in the shared control plane must
    not be reconciled by this test's controllers. ``namespaces=()`` watches
    the whole cluster. Cluster-scoped kinds are watched cluster-wide either way.
    """
    api: Api | None = request.getfixturevalue("api") if "api" in request.fixturenames else None

    @contextlib.asynccontextmanager
    async def _run(*, kubeconfig: Path | None = None, **overrides: Any) -> AsyncIterator[Running]:
        if api is not None:
            overrides.setdefault("namespaces", tuple(api.namespaces))
        options = OperatorOptions(retry_backoff=(0.2, 1.0), extra_settings=(_fast,), **overrides)
        path = str(kubeconfig or controller_config)
        started = threading.Event()
        holder: dict[str, Any] = {}
        running = Running()

        async def _main(stop: asyncio.Event, ready: threading.Event) -> None:
            connection = await load_kubeconfig(path=path)
            ready_flag = asyncio.Event()
            task = asyncio.create_task(
                serve(connection=connection, options=options, stop_flag=stop, ready_flag=ready_flag)
            )
            waiter = asyncio.create_task(ready_flag.wait())
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
            ready.set()
            waiter.cancel()
            running.report = await task

        def _target() -> None:
            loop = asyncio.new_event_loop()
            holder["loop"] = loop
            try:
                stop = asyncio.Event()
                holder["stop"] = stop
                loop.run_until_complete(_main(stop, started))
            except BaseException as exc:
                holder["error"] = exc
            finally:
                started.set()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=_target, name="kustos-operator-under-test")
        thread.start()
        assert await asyncio.to_thread(started.wait, 60), "the operator did not get ready"
        try:
            yield running
        finally:
            if "stop" in holder and thread.is_alive():
                holder["loop"].call_soon_threadsafe(holder["stop"].set)
            await asyncio.to_thread(thread.join, 30)
            assert not thread.is_alive(), "the operator did not stop"
            if "error" in holder:
                raise holder["error"]

    return _run


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, what: str = "condition"
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
