"""The ``kustos`` provider: a KV write reaches the Secret through the server's change stream (push).

The ExternalSecret polls only every hour, so the second value can only arrive
by push. The test waits with a generous timeout and records the latency
(``change_to_secret_seconds``); it never asserts on wall time.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest

from tests.support.server import RunningServer, kustos_server

__all__ = ["kustos_server"]

ES = "kustos.io/v1"


def _decoded(secret: dict[str, Any] | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}


async def test_a_kv_write_reaches_the_secret_by_push(
    api, run_operator, wait, kustos_server: RunningServer, record_property: pytest.RecordProperty
) -> None:
    addr, root = kustos_server
    async with httpx.AsyncClient(base_url=addr, headers={"X-Vault-Token": root}, timeout=10) as kv:
        await kv.post("/v1/secret/data/push/db", json={"data": {"password": "first"}})
        await kv.post("/v1/secret/data/push/other", json={"data": {"x": "1"}})
        await api.create(
            "secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "kustos-token", "namespace": api.ns},
                "data": {"token": base64.b64encode(root.encode()).decode()},
            },
        )
        await api.create(
            "secretstores",
            {
                "apiVersion": ES,
                "kind": "SecretStore",
                "metadata": {"name": "kustos", "namespace": api.ns},
                "spec": {
                    "provider": {
                        "kustos": {
                            "server": addr,
                            "auth": {"tokenSecretRef": {"name": "kustos-token", "key": "token"}},
                        }
                    }
                },
            },
        )
        for name, key in (("db", "push/db"), ("bystander", "push/other")):
            await api.create(
                "externalsecrets",
                {
                    "apiVersion": ES,
                    "kind": "ExternalSecret",
                    "metadata": {"name": name, "namespace": api.ns},
                    "spec": {
                        "secretStoreRef": {"name": "kustos"},
                        "refreshInterval": "1h",
                        "data": [{"secretKey": "value", "remoteRef": {"key": key}}],
                    },
                },
            )

        # Only this test's namespace: ExternalSecrets other tests left in the shared
        # control plane would open providers of their own and blur the count below.
        async with run_operator(namespaces=(api.ns,)) as running:

            async def first() -> bool:
                return b"first" in _decoded(await api.get("v1", "secrets", api.ns, "db")).get(
                    "value", b""
                )

            await wait(first, what="the first value", timeout=15)
            await wait(lambda: _has(api, "bystander"), what="the bystander Secret", timeout=15)
            bystander = await api.get("v1", "secrets", api.ns, "bystander")

            started = time.perf_counter()
            written = await kv.post(
                "/v1/secret/data/push/db", json={"data": {"password": "pushed"}}
            )
            assert written.status_code == 200

            async def pushed() -> bool:
                return b"pushed" in _decoded(await api.get("v1", "secrets", api.ns, "db")).get(
                    "value", b""
                )

            await wait(
                pushed,
                what="the pushed value (refreshInterval is 1h: only push can bring it)",
                timeout=10,
            )
            record_property("change_to_secret_seconds", round(time.perf_counter() - started, 3))

            # a change to one key reconciles only its readers: the other Secret is not rewritten
            again = await api.get("v1", "secrets", api.ns, "bystander")
            assert again is not None and bystander is not None
            assert again["metadata"].get("resourceVersion") == bystander["metadata"].get(
                "resourceVersion"
            )
        # One provider (one change-stream subscription) for the store both ExternalSecrets
        # read, closed on the way out; three reconciles: two first syncs and one push.
        assert running.report is not None
        assert running.report.providers_opened == running.report.providers_closed == 1
        assert running.report.reconciles == 3


async def _has(api: Any, name: str) -> bool:
    return await api.get("v1", "secrets", api.ns, name) is not None
