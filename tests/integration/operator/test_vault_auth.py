"""The vault provider's auth methods against real peers: OpenBao (``bao server -dev``) and ``kustos server``.

``kubernetes`` auth is verified by the peer itself: its kubernetes auth
method is pointed at the session's real API server (loopback URL, CA, a
reviewer ServiceAccount's token), so every login is a real TokenReview of
a real TokenRequest token. Also here: ``appRole`` (with a re-login once the
token's TTL is two-thirds over), ``metadataPolicy: Fetch``,
``conversionStrategy: Unicode`` and ``decodingStrategy``, and the refusals
that keep a namespaced SecretStore from borrowing the controller's identity.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.operator.test_eso_group import apply_yaml
from tests.support.chart import CONTROLLER_ACCOUNT, RELEASE_NAMESPACE
from tests.support.kube import ISSUER
from tests.support.kubeauth import configure_kubernetes_auth, write_role
from tests.support.openbao import OpenBao, openbao
from tests.support.server import RunningServer, kustos_server

__all__ = ["kustos_server", "openbao"]

ESO = "external-secrets.io/v1"
READ_ALL = 'path "secret/*" { capabilities = ["read", "list"] }'


def _decoded(secret: dict[str, Any] | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}


def _ready(body: dict[str, Any] | None) -> tuple[str, str, str] | None:
    for condition in ((body or {}).get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return condition["status"], condition.get("reason", ""), condition.get("message", "")
    return None


async def _call(peer: httpx.AsyncClient, method: str, path: str, body: Any = None) -> Any:
    answer = await peer.request(method, f"/v1/{path}", json=body)
    assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
    return answer.json() if answer.content else {}


@pytest.fixture(params=["openbao", "kustos"])
async def peer(
    request: pytest.FixtureRequest, installed: Any
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """A Vault-compatible server with kubernetes auth on the real API server and a read policy."""
    if request.param == "openbao":
        bao: OpenBao = request.getfixturevalue("openbao")
        addr, root = bao.addr, bao.root_token
    else:
        server: RunningServer = request.getfixturevalue("kustos_server")
        addr, root = server
    await asyncio.to_thread(configure_kubernetes_auth, installed.plane, addr, root)
    async with httpx.AsyncClient(
        base_url=addr, headers={"X-Vault-Token": root}, timeout=15
    ) as client:
        await _call(client, "PUT", "sys/policies/acl/read-all", {"policy": READ_ALL})
        yield addr, client


async def test_kubernetes_auth_with_a_service_account_token_metadata_and_conversion(
    api, run_operator, wait, peer: tuple[str, httpx.AsyncClient]
) -> None:
    addr, client = peer
    prefix = f"k8s-{api.ns}"
    await _call(
        client,
        "POST",
        f"secret/data/{prefix}/db",
        {"data": {"user": "app", "db@host": "db1", "cert": base64.b64encode(b"\x00\x01").decode()}},
    )
    await _call(
        client,
        "POST",
        f"secret/metadata/{prefix}/db",
        {"custom_metadata": {"owner": "team-a", "tier": "gold"}},
    )
    await asyncio.to_thread(api.plane.ensure_service_account, api.ns, "app")
    await asyncio.to_thread(
        write_role,
        addr,
        client.headers["X-Vault-Token"],
        f"app-{api.ns}",
        namespaces=[api.ns],
        service_accounts=["app"],
        policies=["read-all"],
        audience="vault",
    )
    await apply_yaml(
        api,
        f"""
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: vault, namespace: NAMESPACE}}
spec:
  provider:
    vault:
      server: "{addr}"
      path: secret
      version: v2
      auth:
        kubernetes:
          mountPath: kubernetes
          role: app-NAMESPACE
          serviceAccountRef:
            name: app
            audiences: [vault]
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: db, namespace: NAMESPACE}}
spec:
  secretStoreRef: {{name: vault}}
  data:
  - secretKey: owner
    remoteRef: {{key: {prefix}/db, property: owner, metadataPolicy: Fetch}}
  - secretKey: cert
    remoteRef: {{key: {prefix}/db, property: cert, decodingStrategy: Base64}}
  dataFrom:
  - extract: {{key: {prefix}/db, conversionStrategy: Unicode}}
  - extract: {{key: {prefix}/db, metadataPolicy: Fetch}}
""",
    )
    async with run_operator():

        async def synced() -> bool:
            return _decoded(await api.get("v1", "secrets", api.ns, "db")) == {
                "user": b"app",
                "db_U0040_host": b"db1",  # "@" under conversionStrategy Unicode
                "cert": b"\x00\x01",  # decodingStrategy Base64
                "owner": b"team-a",  # metadataPolicy Fetch: custom_metadata
                "tier": b"gold",
            }

        await wait(synced, what="the Secret read with a kubernetes login", timeout=30)


async def test_a_secret_store_never_logs_in_as_the_controller(
    api, run_operator, wait, peer: tuple[str, httpx.AsyncClient]
) -> None:
    addr, client = peer
    await _call(client, "POST", f"secret/data/own-{api.ns}", {"data": {"k": "v"}})
    # A role the controller's own ServiceAccount could log in to:
    await asyncio.to_thread(
        write_role,
        addr,
        client.headers["X-Vault-Token"],
        f"controller-{api.ns}",
        namespaces=[RELEASE_NAMESPACE],
        service_accounts=[CONTROLLER_ACCOUNT],
        policies=["read-all"],
        audience=ISSUER,
    )
    cluster_store = f"own-{api.ns}"
    store_spec = {
        "provider": {
            "vault": {
                "server": addr,
                "path": "secret",
                "version": "v2",
                "auth": {"kubernetes": {"role": f"controller-{api.ns}"}},
            }
        }
    }
    await api.create(
        "secretstores",
        {
            "apiVersion": ESO,
            "kind": "SecretStore",
            "metadata": {"name": "borrow", "namespace": api.ns},
            "spec": store_spec,
        },
    )
    await api.create(
        "clustersecretstores",
        {
            "apiVersion": ESO,
            "kind": "ClusterSecretStore",
            "metadata": {"name": cluster_store},
            "spec": {**store_spec, "conditions": [{"namespaces": [api.ns]}]},
        },
    )
    for name, ref in (
        ("borrow", {"name": "borrow"}),
        ("cluster", {"name": cluster_store, "kind": "ClusterSecretStore"}),
    ):
        await api.create(
            "externalsecrets",
            {
                "apiVersion": ESO,
                "kind": "ExternalSecret",
                "metadata": {"name": name, "namespace": api.ns},
                "spec": {
                    "secretStoreRef": ref,
                    "data": [
                        {"secretKey": "k", "remoteRef": {"key": f"own-{api.ns}", "property": "k"}}
                    ],
                },
            },
        )
    try:
        async with run_operator():

            async def cluster_synced() -> bool:
                return _decoded(await api.get("v1", "secrets", api.ns, "cluster")) == {"k": b"v"}

            await wait(cluster_synced, what="the ClusterSecretStore's login as the controller")

            async def refused() -> bool:
                es = await api.get(ESO, "externalsecrets", api.ns, "borrow")
                return (_ready(es) or ("",))[0] == "False"

            await wait(refused, what="the SecretStore refused")
            _, _, message = _ready(await api.get(ESO, "externalsecrets", api.ns, "borrow"))  # type: ignore[misc]
            assert "serviceAccountRef or secretRef" in message
            assert await api.get("v1", "secrets", api.ns, "borrow") is None
    finally:
        await api.delete(ESO, "clustersecretstores", None, cluster_store)


async def test_app_role_logs_in_again_when_the_token_ages(
    api, run_operator, wait, peer: tuple[str, httpx.AsyncClient]
) -> None:
    addr, client = peer
    mounts = await _call(client, "GET", "sys/auth")
    if "approle/" not in mounts.get("data", mounts):
        await _call(client, "POST", "sys/auth/approle", {"type": "approle"})
    role = f"app-{api.ns}"
    await _call(
        client,
        "POST",
        f"auth/approle/role/{role}",
        {"token_policies": ["read-all"], "token_ttl": "3s", "token_max_ttl": "3s"},
    )
    role_id = (await _call(client, "GET", f"auth/approle/role/{role}/role-id"))["data"]["role_id"]
    secret_id = (await _call(client, "POST", f"auth/approle/role/{role}/secret-id"))["data"][
        "secret_id"
    ]
    await _call(client, "POST", f"secret/data/ar-{api.ns}", {"data": {"k": "one"}})
    await api.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "approle", "namespace": api.ns},
            "stringData": {"secret-id": secret_id, "role-id": role_id},
        },
    )
    await apply_yaml(
        api,
        f"""
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: approle, namespace: NAMESPACE}}
spec:
  provider:
    vault:
      server: "{addr}"
      path: secret
      version: v2
      auth:
        appRole:
          path: approle
          roleRef: {{name: approle, key: role-id}}
          secretRef: {{name: approle, key: secret-id}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: ar, namespace: NAMESPACE}}
spec:
  refreshInterval: 1s
  secretStoreRef: {{name: approle}}
  data:
  - secretKey: k
    remoteRef: {{key: ar-NAMESPACE, property: k}}
""",
    )
    async with run_operator():

        async def value(expected: bytes) -> bool:
            return _decoded(await api.get("v1", "secrets", api.ns, "ar")) == {"k": expected}

        await wait(lambda: value(b"one"), what="the first read with an AppRole login")
        await asyncio.sleep(4)  # the first token has expired by now
        await _call(client, "POST", f"secret/data/ar-{api.ns}", {"data": {"k": "two"}})
        await wait(lambda: value(b"two"), what="a read after the token expired", timeout=30)
