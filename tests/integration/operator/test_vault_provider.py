"""The vault provider through the controller: a real ``kustos server --dev`` and a real OpenBao (``bao server -dev``)."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from tests.support.openbao import OpenBao, openbao
from tests.support.server import RunningServer, kustos_server

__all__ = ["kustos_server", "openbao"]

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


async def test_find_on_a_real_openbao_skips_soft_deleted_and_destroyed_versions(
    api, run_operator, wait, openbao: OpenBao
) -> None:
    ns = api.ns
    prefix = f"find-{ns}"
    async with httpx.AsyncClient(
        base_url=openbao.addr, headers={"X-Vault-Token": openbao.root_token}, timeout=10
    ) as bao:

        async def put(name: str, value: str) -> None:
            response = await bao.post(
                f"/v1/secret/data/{prefix}/{name}", json={"data": {"v": value}}
            )
            assert response.status_code == 200, response.text

        for name in ("alive", "soft", "destroyed", "newest-deleted", "later"):
            await put(name, f"{name}-1")
        await put("newest-deleted", "newest-deleted-2")
        # soft delete of the current version; destroy; delete only the newest of two versions
        assert (await bao.delete(f"/v1/secret/data/{prefix}/soft")).status_code == 204
        destroyed = await bao.post(f"/v1/secret/destroy/{prefix}/destroyed", json={"versions": [1]})
        assert destroyed.status_code == 204
        deleted = await bao.post(
            f"/v1/secret/delete/{prefix}/newest-deleted", json={"versions": [2]}
        )
        assert deleted.status_code == 204
        listed = await bao.request("LIST", f"/v1/secret/metadata/{prefix}")
        assert sorted(listed.json()["data"]["keys"]) == [
            "alive", "destroyed", "later", "newest-deleted", "soft"
        ], "OpenBao still lists deleted and destroyed secrets"  # fmt: skip

        await api.create(
            "secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "bao-token", "namespace": ns},
                "data": {"token": base64.b64encode(openbao.root_token.encode()).decode()},
            },
        )
        await api.create(
            "secretstores",
            {
                "apiVersion": ES,
                "kind": "SecretStore",
                "metadata": {"name": "bao", "namespace": ns},
                "spec": {
                    "provider": {
                        "vault": {
                            "server": openbao.addr,
                            "path": "secret",
                            "version": "v2",
                            "auth": {"tokenSecretRef": {"name": "bao-token", "key": "token"}},
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
                "metadata": {"name": "found", "namespace": ns},
                "spec": {
                    "secretStoreRef": {"name": "bao"},
                    "refreshInterval": "1h",
                    "dataFrom": [{"find": {"path": f"{prefix}/"}}],
                },
            },
        )

        def decoded(secret: dict[str, Any] | None) -> dict[str, bytes]:
            return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}

        key = prefix.replace("/", "_")
        async with run_operator():

            async def synced() -> bool:
                return decoded(await api.get("v1", "secrets", ns, "found")) == {
                    f"{key}_alive": b'{"v":"alive-1"}',
                    f"{key}_later": b'{"v":"later-1"}',
                }

            await wait(synced, what="only the live secrets found", timeout=30)
            es = await api.get(ES, "externalsecrets", ns, "found")
            [ready] = [c for c in es["status"]["conditions"] if c["type"] == "Ready"]  # type: ignore[index]
            assert (ready["status"], ready["reason"]) == ("True", "SecretSynced")

            # A secret soft-deleted after the sync leaves the Secret at the next sync.
            assert (await bao.delete(f"/v1/secret/data/{prefix}/later")).status_code == 204
            await api.patch(
                ES,
                "externalsecrets",
                ns,
                "found",
                {"metadata": {"annotations": {"force-sync": "1"}}},
            )

            async def dropped() -> bool:
                return decoded(await api.get("v1", "secrets", ns, "found")) == {
                    f"{key}_alive": b'{"v":"alive-1"}'
                }

            await wait(dropped, what="the soft-deleted key gone from the Secret", timeout=30)
