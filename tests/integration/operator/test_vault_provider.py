"""The vault provider against a real ``kustos server --dev`` (Vault's KV v2 wire API), through the operator."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from tests.support.server import RunningServer, kustos_server

__all__ = ["kustos_server"]

ES = "kustos.io/v1"


async def test_vault_provider_syncs_from_a_kustos_server(
    api, run_operator, wait, kustos_server: RunningServer
) -> None:
    addr, root = kustos_server
    async with httpx.AsyncClient(
        base_url=addr, headers={"X-Vault-Token": root}, timeout=10
    ) as vault:
        written = await vault.post(
            "/v1/secret/data/team/db", json={"data": {"user": "app", "password": "v1-pass"}}
        )
        assert written.status_code < 300, written.text

        await api.create(
            "secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "vault-token", "namespace": api.ns},
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
                        "vault": {
                            "server": addr,
                            "path": "secret",
                            "version": "v2",
                            "auth": {"tokenSecretRef": {"name": "vault-token", "key": "token"}},
                        }
                    }
                },
            },
        )
        await api.create(
            "externalsecrets",
            {
                "apiVersion": ES,
                "kind": "ExternalSecret",
                "metadata": {"name": "db", "namespace": api.ns},
                "spec": {
                    "secretStoreRef": {"name": "kustos"},
                    "data": [
                        {"secretKey": "pw", "remoteRef": {"key": "team/db", "property": "password"}}
                    ],
                    "dataFrom": [{"extract": {"key": "team/db"}}],
                },
            },
        )

        def decoded(secret: dict[str, Any] | None) -> dict[str, bytes]:
            return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}

        async with run_operator():

            async def synced() -> bool:
                got = decoded(await api.get("v1", "secrets", api.ns, "db"))
                return got == {"pw": b"v1-pass", "user": b"app", "password": b"v1-pass"}

            await wait(synced, what="Kustos KV values in the Secret", timeout=15)

            await vault.post(
                "/v1/secret/data/team/db", json={"data": {"user": "app", "password": "v2-pass"}}
            )
            await api.patch(
                ES,
                "externalsecrets",
                api.ns,
                "db",
                {"metadata": {"annotations": {"force-sync": "1"}}},
            )

            async def rotated() -> bool:
                return decoded(await api.get("v1", "secrets", api.ns, "db")).get("pw") == b"v2-pass"

            await wait(rotated, what="new KV version in the Secret", timeout=15)
