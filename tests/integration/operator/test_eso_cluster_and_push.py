"""ClusterExternalSecret fan-out and PushSecret to a Kustos server, on a real kube-apiserver.

Unmodified External Secrets manifests (``external-secrets.io/v1``
ClusterExternalSecret, ``v1alpha1`` PushSecret), the controller running as
the chart's ServiceAccount (its RBAC applied to the real API server), the
controller manager garbage-collecting what a deleted ClusterExternalSecret
owned, and a real ``kustos server --dev`` receiving what a PushSecret pushes
through the ``vault`` provider.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx

from tests.integration.operator.test_eso_group import apply_yaml
from tests.support.server import RunningServer, kustos_server

__all__ = ["kustos_server"]

ESO = "external-secrets.io/v1"
PUSH = "external-secrets.io/v1alpha1"


def _decoded(secret: dict[str, Any] | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}


def _ready(body: dict[str, Any] | None) -> tuple[str, str, str] | None:
    for condition in ((body or {}).get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return condition["status"], condition.get("reason", ""), condition.get("message", "")
    return None


async def test_a_cluster_external_secret_fans_out_to_two_namespaces_and_cleans_up(
    api, run_operator, wait
) -> None:
    team = f"team-{uuid.uuid4().hex[:6]}"
    first, second, other = api.namespace("ces-a"), api.namespace("ces-b"), api.namespace("ces-c")
    for namespace in (first, second):
        await api.patch(
            "v1", "namespaces", None, namespace, {"metadata": {"labels": {"team": team}}}
        )
    store, ces = f"fake-{team}", f"shared-{team}"
    manifest = f"""
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: {store}
spec:
  provider:
    fake:
      data:
      - key: /shared/db
        value: '{{"password": "pw-1"}}'
---
apiVersion: external-secrets.io/v1
kind: ClusterExternalSecret
metadata:
  name: {ces}
spec:
  externalSecretName: db-credentials
  externalSecretMetadata:
    labels:
      managed-by: platform
  namespaceSelectors:
  - matchLabels:
      team: {team}
  refreshTime: 1m
  externalSecretSpec:
    refreshInterval: 1h
    secretStoreRef:
      kind: ClusterSecretStore
      name: {store}
    target:
      name: db
    dataFrom:
    - extract:
        key: /shared/db
"""
    await apply_yaml(api, manifest)
    try:
        # The ClusterExternalSecret and the namespaces are cluster-scoped (watched whatever the
        # namespaces); the ExternalSecrets it writes are reconciled in this test's namespaces only.
        async with run_operator():

            async def provisioned(namespaces: list[str]) -> bool:
                body = await api.get(ESO, "clusterexternalsecrets", None, ces)
                status = (body or {}).get("status") or {}
                return (
                    status.get("provisionedNamespaces") == sorted(namespaces)
                    and (_ready(body) or ("",))[0] == "True"
                )

            await wait(lambda: provisioned([first, second]), what="two namespaces provisioned")
            body = await api.get(ESO, "clusterexternalsecrets", None, ces)
            assert body is not None and body["status"]["externalSecretName"] == "db-credentials"
            for namespace in (first, second):
                es = await api.get(ESO, "externalsecrets", namespace, "db-credentials")
                assert es is not None
                assert es["metadata"]["labels"] == {"managed-by": "platform"}
                (owner,) = es["metadata"]["ownerReferences"]
                assert (
                    owner["kind"] == "ClusterExternalSecret"
                    and owner["uid"] == body["metadata"]["uid"]
                )

                async def synced(namespace: str = namespace) -> bool:
                    secret = await api.get("v1", "secrets", namespace, "db")
                    return _decoded(secret) == {"password": b"pw-1"}

                await wait(synced, what=f"the Secret in {namespace}")
            assert await api.get(ESO, "externalsecrets", other, "db-credentials") is None

            # A hand-deleted ExternalSecret is put back.
            await api.delete(ESO, "externalsecrets", first, "db-credentials")

            async def restored() -> bool:
                es = await api.get(ESO, "externalsecrets", first, "db-credentials")
                return es is not None and not (es["metadata"].get("deletionTimestamp"))

            await wait(restored, what="the deleted ExternalSecret put back")

            # A namespace that stops matching loses its ExternalSecret.
            await api.patch(
                "v1", "namespaces", None, second, {"metadata": {"labels": {"team": None}}}
            )
            await wait(lambda: provisioned([first]), what="the unlabelled namespace dropped")

            async def removed() -> bool:
                return await api.get(ESO, "externalsecrets", second, "db-credentials") is None

            await wait(removed, what="the ExternalSecret deleted from the dropped namespace")

            # Someone else's ExternalSecret of that name: reported, left alone.
            await api.create(
                "externalsecrets",
                {
                    "apiVersion": ESO,
                    "kind": "ExternalSecret",
                    "metadata": {"name": "db-credentials", "namespace": other},
                    "spec": {
                        "secretStoreRef": {"name": store, "kind": "ClusterSecretStore"},
                        "target": {"name": "mine"},
                        "dataFrom": [{"extract": {"key": "/shared/db"}}],
                    },
                },
            )
            await api.patch(
                "v1", "namespaces", None, other, {"metadata": {"labels": {"team": team}}}
            )

            async def reported() -> bool:
                status = ((await api.get(ESO, "clusterexternalsecrets", None, ces)) or {}).get(
                    "status"
                ) or {}
                return status.get("failedNamespaces") == [
                    {"namespace": other, "reason": "external secret already exists in namespace"}
                ]

            await wait(reported, what="the foreign ExternalSecret reported")
            foreign = await api.get(ESO, "externalsecrets", other, "db-credentials")
            assert foreign is not None and not foreign["metadata"].get("ownerReferences")
            assert (_ready(await api.get(ESO, "clusterexternalsecrets", None, ces)) or ("",))[
                0
            ] == "False"

            # Deleting the ClusterExternalSecret deletes what it owns (garbage collection).
            await api.delete(ESO, "clusterexternalsecrets", None, ces)

            async def collected() -> bool:
                return (
                    await api.get(ESO, "externalsecrets", first, "db-credentials") is None
                    and await api.get("v1", "secrets", first, "db") is None
                )

            await wait(collected, what="the ExternalSecret and its Secret collected", timeout=60)
            assert await api.get(ESO, "externalsecrets", other, "db-credentials") is not None
    finally:
        for plural, name in (("clusterexternalsecrets", ces), ("clustersecretstores", store)):
            if await api.get(ESO, plural, None, name) is not None:
                await api.delete(ESO, plural, None, name)


async def test_a_push_secret_writes_to_a_kustos_server_and_deletes_what_it_pushed(
    api, run_operator, wait, kustos_server: RunningServer
) -> None:
    addr, root = kustos_server
    prefix = f"push-{api.ns}"
    async with httpx.AsyncClient(
        base_url=addr, headers={"X-Vault-Token": root}, timeout=10
    ) as vault:

        async def kv(path: str) -> dict[str, Any] | None:
            answer = await vault.get(f"/v1/secret/data/{prefix}/{path}")
            if answer.status_code == 404:
                return None
            assert answer.status_code == 200, answer.text
            return dict(answer.json()["data"]["data"] or {}) or None

        async def custom(path: str) -> dict[str, Any] | None:
            answer = await vault.get(f"/v1/secret/metadata/{prefix}/{path}")
            return None if answer.status_code == 404 else answer.json()["data"]["custom_metadata"]

        # Someone's own secret that a PushSecret must not overwrite:
        await vault.post(f"/v1/secret/data/{prefix}/theirs", json={"data": {"x": "keep"}})
        await api.create(
            "secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "vault-token", "namespace": api.ns},
                "stringData": {"token": root},
            },
        )
        await api.create(
            "secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "app-source", "namespace": api.ns},
                "stringData": {"password": "pw-1", "user": "app"},
            },
        )
        await apply_yaml(
            api,
            f"""
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: kustos
  namespace: NAMESPACE
spec:
  provider:
    vault:
      server: "{addr}"
      path: "secret"
      version: "v2"
      auth:
        tokenSecretRef:
          name: vault-token
          key: token
---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata:
  name: push-app
  namespace: NAMESPACE
spec:
  refreshInterval: 1h
  updatePolicy: Replace
  deletionPolicy: Delete
  secretStoreRefs:
  - name: kustos
    kind: SecretStore
  selector:
    secret:
      name: app-source
  data:
  - match:
      secretKey: password
      remoteRef:
        remoteKey: {prefix}/app
        property: password
  - match:
      remoteRef:
        remoteKey: {prefix}/whole
  - match:
      secretKey: user
      remoteRef:
        remoteKey: {prefix}/user
        property: username
""",
        )
        async with run_operator():

            async def pushed() -> bool:
                return (
                    await kv("app") == {"password": "pw-1"}
                    and await kv("whole") == {"password": "pw-1", "user": "app"}
                    and await kv("user") == {"username": "app"}
                )

            await wait(pushed, what="the values pushed to the Kustos server")
            assert await custom("app") == {"managed-by": "external-secrets"}

            async def ready() -> bool:
                ps = await api.get(PUSH, "pushsecrets", api.ns, "push-app")
                return (_ready(ps) or ("",))[0] == "True"

            await wait(ready, what="Ready=True on the PushSecret")
            ps = await api.get(PUSH, "pushsecrets", api.ns, "push-app")
            assert ps is not None
            assert ps["metadata"]["finalizers"] == ["pushsecret.externalsecrets.io/finalizer"]
            assert _ready(ps)[1] == "Synced"  # type: ignore[index]
            synced = ps["status"]["syncedPushSecrets"]
            assert sorted(synced["SecretStore/kustos"]) == sorted(
                [f"{prefix}/app/password", f"{prefix}/whole", f"{prefix}/user/username"]
            )

            # A change of the source Secret is pushed at once.
            await api.patch(
                "v1",
                "secrets",
                api.ns,
                "app-source",
                {"data": {"password": base64.b64encode(b"pw-2").decode()}},
            )

            async def repushed() -> bool:
                return await kv("app") == {"password": "pw-2"}

            await wait(repushed, what="the new value pushed")

            # An entry removed from the spec is deleted remotely (deletionPolicy Delete).
            data = ps["spec"]["data"]
            await api.patch(PUSH, "pushsecrets", api.ns, "push-app", {"spec": {"data": data[:2]}})

            async def dropped() -> bool:
                return await custom("user") is None

            await wait(dropped, what="the dropped entry deleted from the server")

            # A secret the PushSecret did not write is never overwritten.
            await api.patch(
                PUSH,
                "pushsecrets",
                api.ns,
                "push-app",
                {
                    "spec": {
                        "data": [
                            *data[:2],
                            {
                                "match": {
                                    "secretKey": "user",
                                    "remoteRef": {"remoteKey": f"{prefix}/theirs", "property": "x"},
                                }
                            },
                        ]
                    }
                },
            )

            async def refused() -> bool:
                ps = await api.get(PUSH, "pushsecrets", api.ns, "push-app")
                return (_ready(ps) or ("",))[:2] == ("False", "Errored")

            await wait(refused, what="the unmanaged remote secret refused")
            assert await kv("theirs") == {"x": "keep"}
            _, _, message = _ready(await api.get(PUSH, "pushsecrets", api.ns, "push-app"))  # type: ignore[misc]
            assert "not written by a PushSecret" in message and "pw-2" not in message
            assert [e for e in await api.events(api.ns, reason="Errored")]

            # Deleting the PushSecret deletes what it pushed, then lets the object go.
            await api.patch(PUSH, "pushsecrets", api.ns, "push-app", {"spec": {"data": data[:2]}})
            await wait(ready, what="Ready again")
            await api.delete(PUSH, "pushsecrets", api.ns, "push-app")

            async def gone() -> bool:
                return (
                    await api.get(PUSH, "pushsecrets", api.ns, "push-app") is None
                    and await custom("app") is None
                    and await custom("whole") is None
                )

            await wait(gone, what="the pushed secrets deleted and the PushSecret gone")
            assert await kv("theirs") == {"x": "keep"}


async def test_a_v1beta1_cluster_external_secret_with_named_and_expression_selected_namespaces(
    api, run_operator, wait
) -> None:
    team = f"team-{uuid.uuid4().hex[:6]}"
    named, selected, other = (
        api.namespace("ces-named"),
        api.namespace("ces-sel"),
        api.namespace("ces-other"),
    )
    await api.patch("v1", "namespaces", None, selected, {"metadata": {"labels": {"tier": team}}})
    await api.patch("v1", "namespaces", None, other, {"metadata": {"labels": {"tier": "x"}}})
    store, ces = f"fake-{team}", f"legacy-{team}"
    await apply_yaml(
        api,
        f"""
apiVersion: external-secrets.io/v1beta1
kind: ClusterSecretStore
metadata:
  name: {store}
spec:
  provider:
    fake:
      data:
      - key: token
        value: t-1
---
apiVersion: external-secrets.io/v1beta1
kind: ClusterExternalSecret
metadata:
  name: {ces}
spec:
  namespaces:
  - {named}
  - no-such-namespace-{team}
  namespaceSelector:
    matchExpressions:
    - key: tier
      operator: In
      values: [{team}]
  externalSecretSpec:
    secretStoreRef:
      kind: ClusterSecretStore
      name: {store}
    target:
      name: token
    data:
    - secretKey: value
      remoteRef:
        key: token
""",
    )
    try:
        async with run_operator():

            async def provisioned() -> bool:
                body = await api.get(
                    "external-secrets.io/v1beta1", "clusterexternalsecrets", None, ces
                )
                status = (body or {}).get("status") or {}
                return status.get("provisionedNamespaces") == sorted([named, selected])

            await wait(provisioned, what="the named and the selected namespace provisioned")
            for namespace in (named, selected):
                es = await api.get(ESO, "externalsecrets", namespace, ces)  # default name
                assert es is not None and es["metadata"]["ownerReferences"][0]["name"] == ces

                async def synced(namespace: str = namespace) -> bool:
                    return _decoded(await api.get("v1", "secrets", namespace, "token")) == {
                        "value": b"t-1"
                    }

                await wait(synced, what=f"the Secret in {namespace}")
            assert await api.get(ESO, "externalsecrets", other, ces) is None
    finally:
        for plural, name in (("clusterexternalsecrets", ces), ("clustersecretstores", store)):
            if await api.get(ESO, plural, None, name) is not None:
                await api.delete(ESO, plural, None, name)


async def test_a_push_secret_through_a_selected_cluster_store_with_a_template_if_not_exists(
    api, run_operator, wait, kustos_server: RunningServer
) -> None:
    addr, root = kustos_server
    prefix = f"push-ine-{api.ns}"
    store = f"kustos-{api.ns}"
    async with httpx.AsyncClient(
        base_url=addr, headers={"X-Vault-Token": root}, timeout=10
    ) as vault:

        async def kv(path: str) -> dict[str, Any] | None:
            answer = await vault.get(f"/v1/secret/data/{prefix}/{path}")
            if answer.status_code == 404:
                return None
            assert answer.status_code == 200, answer.text
            return dict(answer.json()["data"]["data"] or {}) or None

        await api.create(
            "secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "vault-token", "namespace": api.ns},
                "stringData": {"token": root},
            },
        )
        await api.create(
            "secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "source", "namespace": api.ns, "labels": {"push": "yes"}},
                "stringData": {"password": "pw-1"},
            },
        )
        await apply_yaml(
            api,
            f"""
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: {store}
  labels:
    push-target: NAMESPACE
spec:
  provider:
    vault:
      server: "{addr}"
      path: "secret"
      version: "v2"
      auth:
        tokenSecretRef:
          name: vault-token
          key: token
          namespace: NAMESPACE
---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata:
  name: push-once
  namespace: NAMESPACE
spec:
  updatePolicy: IfNotExists
  secretStoreRefs:
  - kind: ClusterSecretStore
    labelSelector:
      matchLabels:
        push-target: NAMESPACE
  selector:
    secret:
      selector:
        matchLabels:
          push: "yes"
  template:
    engineVersion: v2
    data:
      shout: "{{{{ .password | upper }}}}"
  data:
  - match:
      secretKey: shout
      remoteRef:
        remoteKey: {prefix}/a
        property: v
""",
        )
        try:
            async with run_operator():

                async def pushed() -> bool:
                    return await kv("a") == {"v": "PW-1"}

                await wait(pushed, what="the templated value pushed")

                async def ready() -> bool:
                    return (_ready(await api.get(PUSH, "pushsecrets", api.ns, "push-once")) or
                            ("",))[0] == "True"  # fmt: skip

                await wait(ready, what="Ready=True")
                ps = await api.get(PUSH, "pushsecrets", api.ns, "push-once")
                assert ps is not None and "finalizers" not in ps["metadata"]  # deletionPolicy None
                assert ps["status"]["syncedPushSecrets"] == {
                    f"ClusterSecretStore/{store}": {
                        f"{prefix}/a/v": ps["spec"]["data"][0],
                    }
                }
                assert "Existing secrets in providers unchanged" in _ready(ps)[2]  # type: ignore[index]

                # A new source value and a new entry: the new key gets the new value, the
                # existing one is left as it is (IfNotExists).
                await api.patch(
                    "v1",
                    "secrets",
                    api.ns,
                    "source",
                    {"data": {"password": base64.b64encode(b"pw-2").decode()}},
                )
                entries = ps["spec"]["data"]
                second = {"match": {"secretKey": "shout",
                                    "remoteRef": {"remoteKey": f"{prefix}/b", "property": "v"}}}  # fmt: skip
                await api.patch(
                    PUSH, "pushsecrets", api.ns, "push-once", {"spec": {"data": [*entries, second]}}
                )

                async def second_pushed() -> bool:
                    return await kv("b") == {"v": "PW-2"}

                await wait(second_pushed, what="the new entry pushed with the new value")
                assert await kv("a") == {"v": "PW-1"}

                # deletionPolicy None: deleting the PushSecret leaves what it pushed.
                await api.delete(PUSH, "pushsecrets", api.ns, "push-once")

                async def gone() -> bool:
                    return await api.get(PUSH, "pushsecrets", api.ns, "push-once") is None

                await wait(gone, what="the PushSecret gone")
                assert await kv("a") == {"v": "PW-1"} and await kv("b") == {"v": "PW-2"}
        finally:
            if await api.get(ESO, "clustersecretstores", None, store) is not None:
                await api.delete(ESO, "clustersecretstores", None, store)


async def test_a_push_secret_through_the_kustos_provider(
    api, run_operator, wait, kustos_server: RunningServer
) -> None:
    addr, root = kustos_server
    prefix = f"push-kustos-{api.ns}"
    await api.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kustos-token", "namespace": api.ns},
            "stringData": {"token": root},
        },
    )
    await api.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "source", "namespace": api.ns},
            "stringData": {"db_U0040_host": "db1"},  # ReverseUnicode: db@host
        },
    )
    await apply_yaml(
        api,
        f"""
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: kustos
  namespace: NAMESPACE
spec:
  provider:
    kustos:
      server: "{addr}"
      auth:
        tokenSecretRef:
          name: kustos-token
          key: token
---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata:
  name: push
  namespace: NAMESPACE
spec:
  secretStoreRefs:
  - name: kustos
  selector:
    secret:
      name: source
  data:
  - conversionStrategy: ReverseUnicode
    match:
      secretKey: db@host
      remoteRef:
        remoteKey: {prefix}/db
        property: host
""",
    )
    async with (
        httpx.AsyncClient(base_url=addr, headers={"X-Vault-Token": root}, timeout=10) as vault,
        run_operator(),
    ):

        async def pushed() -> bool:
            answer = await vault.get(f"/v1/secret/data/{prefix}/db")
            return answer.status_code == 200 and answer.json()["data"]["data"] == {"host": "db1"}

        await wait(pushed, what="the value pushed through the kustos provider")
        metadata = (await vault.get(f"/v1/secret/metadata/{prefix}/db")).json()["data"]
        assert metadata["custom_metadata"] == {"managed-by": "external-secrets"}
        ps = await api.get(PUSH, "pushsecrets", api.ns, "push")
        assert ps is not None and list(ps["status"]["syncedPushSecrets"]) == ["SecretStore/kustos"]

        # deletionPolicy Delete, then the source Secret goes: what was pushed goes too.
        await api.patch(PUSH, "pushsecrets", api.ns, "push", {"spec": {"deletionPolicy": "Delete"}})

        async def guarded() -> bool:
            ps = await api.get(PUSH, "pushsecrets", api.ns, "push")
            return "pushsecret.externalsecrets.io/finalizer" in (
                (ps or {}).get("metadata", {}).get("finalizers") or []
            )

        await wait(guarded, what="the finalizer added")
        await api.delete("v1", "secrets", api.ns, "source")

        async def cleaned() -> bool:
            ps = await api.get(PUSH, "pushsecrets", api.ns, "push")
            gone = (await vault.get(f"/v1/secret/metadata/{prefix}/db")).status_code == 404
            return gone and (_ready(ps) or ("", ""))[:2] == ("False", "SourceDeleted")

        await wait(cleaned, what="the pushed secret deleted with its source (SourceDeleted)")
        await api.delete(PUSH, "pushsecrets", api.ns, "push")  # the finalizer goes with it

        async def released() -> bool:
            return await api.get(PUSH, "pushsecrets", api.ns, "push") is None

        await wait(released, what="the PushSecret deleted")
