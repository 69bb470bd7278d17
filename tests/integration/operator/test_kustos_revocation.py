"""A secret destroyed on the server reaches the cluster by push: the ExternalSecret's ``deletionPolicy`` applies.

The ExternalSecret polls only every hour, so the Secret can only go by push:
the server's ``destroy`` change event makes the operator reconcile at once,
the read finds the data gone and ``deletionPolicy: Delete`` removes the
Secret (``Retain`` keeps it). Timeouts are generous; wall time is never asserted.
"""

from __future__ import annotations

import base64

import httpx

from tests.support.server import RunningServer, kustos_server

__all__ = ["kustos_server"]

ES = "kustos.io/v1"


async def test_a_destroyed_secret_is_deleted_or_retained_by_policy(
    api, run_operator, wait, kustos_server: RunningServer
) -> None:
    addr, root = kustos_server
    async with httpx.AsyncClient(base_url=addr, headers={"X-Vault-Token": root}, timeout=10) as kv:
        await kv.post("/v1/secret/data/gone/db", json={"data": {"password": "p1"}})
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
        for name, policy in (("deleted", "Delete"), ("retained", "Retain")):
            await api.create(
                "externalsecrets",
                {
                    "apiVersion": ES,
                    "kind": "ExternalSecret",
                    "metadata": {"name": name, "namespace": api.ns},
                    "spec": {
                        "secretStoreRef": {"name": "kustos"},
                        "refreshInterval": "1h",
                        "target": {"deletionPolicy": policy},
                        "data": [{"secretKey": "value", "remoteRef": {"key": "gone/db"}}],
                    },
                },
            )

        async with run_operator():

            async def both() -> bool:
                return all(
                    [
                        await api.get("v1", "secrets", api.ns, "deleted") is not None,
                        await api.get("v1", "secrets", api.ns, "retained") is not None,
                    ]
                )

            await wait(both, what="both Secrets synced", timeout=15)
            destroyed = await kv.post("/v1/secret/destroy/gone/db", json={"versions": [1]})
            assert destroyed.status_code == 204

            async def gone() -> bool:
                return await api.get("v1", "secrets", api.ns, "deleted") is None

            await wait(
                gone,
                what="the Delete-policy Secret removed (refreshInterval is 1h: only push can do it)",
                timeout=15,
            )
            assert await api.get("v1", "secrets", api.ns, "retained") is not None
