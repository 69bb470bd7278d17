"""ExternalSecretController: one provider per store however workers race, closed when unused; few API calls.

Fast checks with kmock as the Kubernetes API (the same behaviour runs on a
real API server in tests/integration/operator/). The provider here is a real
implementation of the interface that takes a while to open (as a network
connection does) and counts what is done to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest

from kustos.kube import Connection, KubeClient
from kustos.operator.controllers import ExternalSecretController
from kustos.operator.providers import FindSpec, Provider, ProviderContext, ProviderRegistry
from kustos.operator.providers.base import RemoteRef
from kustos.sensitive import Sensitive

NS = "app"


class CountingProvider:
    """Answers every key with ``value-of-<key>``; opening takes a little while."""

    def __init__(self, log: dict[str, int]) -> None:
        self._log = log
        self.on_change: Any = None

    async def get(self, ref: RemoteRef) -> Sensitive[bytes]:
        return Sensitive(f"value-of-{ref.key}".encode())

    async def get_map(self, ref: RemoteRef) -> dict[str, Sensitive[bytes]]:
        return {"k": await self.get(ref)}

    async def find(self, spec: FindSpec) -> dict[str, Sensitive[bytes]]:
        return {}

    async def validate(self) -> None:
        return None

    async def watch(self, on_change: Any) -> None:
        self._log["subscriptions"] += 1
        self.on_change = on_change

    async def close(self) -> None:
        self._log["closed"] += 1


@pytest.fixture()
def log() -> dict[str, int]:
    return {"opened": 0, "subscriptions": 0, "closed": 0}


@pytest.fixture()
def registry(log: dict[str, int]) -> tuple[ProviderRegistry, list[CountingProvider]]:
    built: list[CountingProvider] = []

    async def create(context: ProviderContext) -> Provider:
        await asyncio.sleep(0.05)  # every worker asks before the first one is done
        log["opened"] += 1
        provider = CountingProvider(log)
        built.append(provider)
        return provider

    return ProviderRegistry({"counting": create}), built


@pytest.fixture()
async def kube(kmock: kmock.KubernetesEmulator) -> AsyncIterator[KubeClient]:
    verbs = {"get", "list", "watch", "create", "patch", "delete"}
    for key, kind, subresources in (
        ("v1/secrets", "Secret", set()),
        ("v1/events", "Event", set()),
        ("kustos.io/v1/externalsecrets", "ExternalSecret", {"status"}),
    ):
        kmock.resources[key] = kmock.ResourceInfo(
            kind=kind, namespaced=True, verbs=verbs, subresources=subresources
        )
    async with KubeClient(connection=Connection(server=str(kmock.url).rstrip("/"))) as client:
        yield client


def _store(name: str, generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "kustos.io/v1",
        "kind": "SecretStore",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"provider": {"counting": {"generation": generation}}},
    }


async def _external_secret(kube: KubeClient, index: int, store: str = "s") -> dict[str, Any]:
    body = {
        "apiVersion": "kustos.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": f"es-{index}", "namespace": NS, "uid": f"uid-{index}"},
        "spec": {
            "secretStoreRef": {"name": store},
            "refreshInterval": "1h",
            "data": [{"secretKey": "v", "remoteRef": {"key": f"k{index}"}}],
        },
    }
    from kustos.operator.controllers import EXTERNAL_SECRETS

    return await kube.create(EXTERNAL_SECRETS, body=body, namespace=NS)


async def _until(check: Any, what: str) -> None:
    async with asyncio.timeout(10):
        while not check():
            await asyncio.sleep(0.01)


async def test_racing_workers_share_one_provider_closed_when_unused(
    kube: KubeClient, registry: tuple[ProviderRegistry, list[CountingProvider]], log: dict[str, int]
) -> None:
    providers, built = registry
    controller = ExternalSecretController(kube=kube, providers=providers, workers=8)
    controller.store_event("ADDED", _store("s"))
    bodies = [await _external_secret(kube, i) for i in range(20)]
    await controller.start()
    try:
        kube.calls.clear()
        for body in bodies:
            controller.observe(body)
        await _until(lambda: controller.reconciles >= 20, "20 reconciles")
        await _until(lambda: kube.calls["PATCH"] >= 20, "20 status patches")
        assert log == {"opened": 1, "subscriptions": 1, "closed": 0}
        assert controller.open_providers == 1
        # A new ExternalSecret costs two calls: create its Secret, patch its status.
        assert dict(kube.calls) == {"POST": 20, "PATCH": 20}

        # A change notice reconciles exactly the ExternalSecret that reads the key, once.
        before = controller.reconciles
        built[0].on_change(frozenset({"k7"}))
        await _until(lambda: controller.reconciles == before + 1, "one reconcile")
        await asyncio.sleep(0.1)
        assert controller.reconciles == before + 1

        # The store changes: the old provider closes, one new one opens.
        controller.store_event("MODIFIED", _store("s", generation=2))
        await _until(lambda: log["opened"] == 2 and log["closed"] == 1, "a new provider")
        assert controller.open_providers == 1

        # Nobody reads the store any more: its provider closes.
        for index in range(20):
            controller.forget(NS, f"es-{index}")
        await _until(lambda: log["closed"] == 2, "the provider closed")
        assert controller.open_providers == 0
    finally:
        await controller.stop()
    assert log["opened"] == log["closed"] == 2


async def test_an_unknown_store_fails_without_an_api_read_and_recovers_when_it_appears(
    kube: KubeClient, registry: tuple[ProviderRegistry, list[CountingProvider]]
) -> None:
    providers, _ = registry
    controller = ExternalSecretController(
        kube=kube, providers=providers, workers=2, retry_backoff=(30.0, 30.0)
    )
    body = await _external_secret(kube, 1, store="later")
    await controller.start()
    try:
        kube.calls.clear()
        controller.observe(body)
        await _until(lambda: controller.reconciles == 1, "the first reconcile")
        await _until(lambda: kube.calls["PATCH"] == 1, "the error status")
        assert kube.calls["GET"] == 0, "stores come from the watch, never read per reconcile"
        controller.store_event("ADDED", _store("later"))
        await _until(lambda: kube.calls["POST"] >= 2, "the Secret created (and the event)")
        assert controller.reconciles == 2, "the store's arrival retries at once, not after back-off"
    finally:
        await controller.stop()
