"""ExternalSecret controller end to end on a real kube-apiserver.

Sync, ownership, status, events, drift repair, deletion policy, garbage
collection (the controller manager deletes an owned Secret with its
ExternalSecret), ClusterSecretStores and the ``kubernetes`` provider under
real RBAC. The controller runs as the chart's ServiceAccount.
"""

from __future__ import annotations

import base64
from typing import Any

ES = "kustos.io/v1"


def _store(name: str, data: list[dict[str, Any]], namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": ES,
        "kind": "SecretStore",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": {"fake": {"data": data}}},
    }


def _external_secret(name: str, spec: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": ES,
        "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _decoded(secret: dict[str, Any] | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}


def _ready(es: dict[str, Any] | None) -> tuple[str, str] | None:
    for condition in ((es or {}).get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return condition["status"], condition["reason"]
    return None


async def test_fake_store_syncs_a_secret_with_owner_label_hash_status_and_events(
    api, run_operator, wait
) -> None:
    ns = api.ns
    await api.create(
        "secretstores",
        _store(
            "fake",
            [
                {"key": "/db/password", "value": "hunter2"},
                {"key": "/db/config", "value": '{"user": "admin", "port": 5432}'},
            ],
            ns,
        ),
    )
    es = await api.create(
        "externalsecrets",
        _external_secret(
            "db",
            {
                "refreshInterval": "1h",
                "secretStoreRef": {"name": "fake", "kind": "SecretStore"},
                "target": {"name": "db-creds"},
                "data": [
                    {"secretKey": "password", "remoteRef": {"key": "/db/password"}},
                    {"secretKey": "user", "remoteRef": {"key": "/db/config", "property": "user"}},
                ],
            },
            ns,
        ),
    )
    async with run_operator():

        async def synced() -> bool:
            return _ready(await api.get(ES, "externalsecrets", ns, "db")) == (
                "True",
                "SecretSynced",
            )

        await wait(synced, what="Ready=True SecretSynced")
        status = (await api.get(ES, "externalsecrets", ns, "db") or {})["status"]
        assert status["binding"] == {"name": "db-creds"}
        assert status["syncedResourceVersion"] == "1" and status["refreshTime"]
        secret = await api.get("v1", "secrets", ns, "db-creds")
        assert secret is not None
        assert _decoded(secret) == {"password": b"hunter2", "user": b"admin"}
        assert secret["metadata"]["labels"]["reconcile.external-secrets.io/managed"] == "true"
        assert (
            len(secret["metadata"]["annotations"]["reconcile.external-secrets.io/data-hash"]) == 56
        )
        (owner,) = secret["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": ES,
            "kind": "ExternalSecret",
            "name": "db",
            "uid": es["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }

        # The first creation shows in the status only: a new ExternalSecret costs two API calls.
        assert await api.events(ns) == []

        # Drift repair: a hand edit (changed value, added key) is reverted.
        await api.patch(
            "v1",
            "secrets",
            ns,
            "db-creds",
            {
                "data": {
                    "password": base64.b64encode(b"edited").decode(),
                    "extra": base64.b64encode(b"x").decode(),
                }
            },
        )

        async def reverted() -> bool:
            current = await api.get("v1", "secrets", ns, "db-creds")
            return _decoded(current) == {"password": b"hunter2", "user": b"admin"}

        await wait(reverted, what="hand edit reverted")

        async def updated_event() -> bool:  # events are posted after the Secret is written
            return [e["reason"] for e in await api.events(ns)] == ["Updated"]

        await wait(updated_event, what="the Updated event")
        (event,) = await api.events(ns)
        assert event["involvedObject"]["uid"] == es["metadata"]["uid"]
        assert event["type"] == "Normal" and "db-creds" in event["message"]

        # A deleted managed Secret comes back.
        await api.delete("v1", "secrets", ns, "db-creds")

        async def recreated() -> bool:
            return await api.get("v1", "secrets", ns, "db-creds") is not None

        await wait(recreated, what="Secret recreated")

        # Deleting the ExternalSecret lets the garbage collector remove its Secret.
        await api.delete(ES, "externalsecrets", ns, "db")

        async def collected() -> bool:
            return await api.get("v1", "secrets", ns, "db-creds") is None

        await wait(collected, what="the owned Secret garbage-collected", timeout=60)


async def test_template_renders_with_sandboxed_jinja(api, run_operator, wait) -> None:
    ns = api.ns
    await api.create(
        "secretstores",
        _store("fake", [{"key": "db", "value": '{"user": "app", "pass": "p@ss"}'}], ns),
    )
    await api.create(
        "externalsecrets",
        _external_secret(
            "dsn",
            {
                "secretStoreRef": {"name": "fake"},
                "target": {
                    "template": {
                        "type": "kubernetes.io/basic-auth",
                        "metadata": {"labels": {"team": "a"}},
                        "data": {
                            "dsn": "postgres://{{ user }}:{{ pass | urlencode }}@db:5432/app",
                            "username": "{{ user }}",
                        },
                    }
                },
                "dataFrom": [{"extract": {"key": "db"}}],
            },
            ns,
        ),
    )
    async with run_operator():

        async def made() -> bool:
            return await api.get("v1", "secrets", ns, "dsn") is not None

        await wait(made, what="templated Secret")
        secret = await api.get("v1", "secrets", ns, "dsn")
        assert secret is not None
        assert _decoded(secret) == {"dsn": b"postgres://app:p%40ss@db:5432/app", "username": b"app"}
        assert secret["type"] == "kubernetes.io/basic-auth"
        assert secret["metadata"]["labels"]["team"] == "a"


async def test_deletion_policy_delete_removes_the_secret_when_the_remote_key_is_gone(
    api, run_operator, wait
) -> None:
    ns = api.ns
    await api.create("secretstores", _store("fake", [{"key": "token", "value": "t0k"}], ns))
    await api.create(
        "externalsecrets",
        _external_secret(
            "tok",
            {
                "refreshInterval": "0",
                "secretStoreRef": {"name": "fake"},
                "target": {"deletionPolicy": "Delete"},
                "data": [{"secretKey": "token", "remoteRef": {"key": "token"}}],
            },
            ns,
        ),
    )
    async with run_operator():

        async def made() -> bool:
            return await api.get("v1", "secrets", ns, "tok") is not None

        await wait(made, what="Secret created")
        await api.patch(
            ES, "secretstores", ns, "fake", {"spec": {"provider": {"fake": {"data": []}}}}
        )
        await api.patch(
            ES, "externalsecrets", ns, "tok", {"metadata": {"annotations": {"force-sync": "1"}}}
        )

        async def gone() -> bool:
            return await api.get("v1", "secrets", ns, "tok") is None

        await wait(gone, what="Secret deleted")

        async def reason() -> bool:
            return _ready(await api.get(ES, "externalsecrets", ns, "tok")) == (
                "True",
                "SecretDeleted",
            )

        await wait(reason, what="Ready reason SecretDeleted")
        assert [e["reason"] for e in await api.events(ns)] == ["Deleted"]


async def test_creation_policies_orphan_and_merge(api, run_operator, wait) -> None:
    ns = api.ns
    await api.create("secretstores", _store("fake", [{"key": "k", "value": "remote"}], ns))
    await api.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "existing", "namespace": ns},
            "data": {"mine": base64.b64encode(b"hand-made").decode()},
        },
    )
    for name, policy, target in (("orphan", "Orphan", "orphan"), ("merge", "Merge", "existing")):
        await api.create(
            "externalsecrets",
            _external_secret(
                name,
                {
                    "secretStoreRef": {"name": "fake"},
                    "target": {"name": target, "creationPolicy": policy},
                    "data": [{"secretKey": "value", "remoteRef": {"key": "k"}}],
                },
                ns,
            ),
        )
    async with run_operator():

        async def both() -> bool:
            orphan = _decoded(await api.get("v1", "secrets", ns, "orphan"))
            merged = _decoded(await api.get("v1", "secrets", ns, "existing"))
            return orphan == {"value": b"remote"} and merged == {
                "mine": b"hand-made",
                "value": b"remote",
            }

        await wait(both, what="the orphan Secret and the merged keys")
        orphan = await api.get("v1", "secrets", ns, "orphan")
        merged = await api.get("v1", "secrets", ns, "existing")
        assert orphan is not None and not orphan["metadata"].get("ownerReferences")
        assert merged is not None and not merged["metadata"].get("ownerReferences")


async def test_invalid_store_reports_error_condition_and_event(api, run_operator, wait) -> None:
    ns = api.ns
    await api.create(
        "externalsecrets",
        _external_secret(
            "broken",
            {
                "secretStoreRef": {"name": "missing"},
                "data": [{"secretKey": "a", "remoteRef": {"key": "a"}}],
            },
            ns,
        ),
    )
    async with run_operator():

        async def failed() -> bool:
            return _ready(await api.get(ES, "externalsecrets", ns, "broken")) == (
                "False",
                "SecretSyncedError",
            )

        await wait(failed, what="Ready=False SecretSyncedError")

        async def warned() -> bool:
            return bool(await api.events(ns, reason="UpdateFailed"))

        await wait(warned, what="an UpdateFailed event")
        events = await api.events(ns, reason="UpdateFailed")
        assert "missing" in events[0]["message"] and events[0]["type"] == "Warning"
        assert await api.get("v1", "secrets", ns, "broken") is None

        # The store appears: the next retry syncs (a store change is picked up without a restart).
        await api.create("secretstores", _store("missing", [{"key": "a", "value": "A"}], ns))

        async def recovered() -> bool:
            return _decoded(await api.get("v1", "secrets", ns, "broken")) == {"a": b"A"}

        await wait(recovered, what="the Secret after the store was created")


async def test_a_cluster_secret_store_serves_several_namespaces(api, run_operator, wait) -> None:
    store = f"cluster-{api.ns}"
    others = [api.ns, api.namespace("second")]
    await api.create(
        "clustersecretstores",
        {
            "apiVersion": ES,
            "kind": "ClusterSecretStore",
            "metadata": {"name": store},
            "spec": {"provider": {"fake": {"data": [{"key": "shared", "value": "everyone"}]}}},
        },
    )
    try:
        for ns in others:
            await api.create(
                "externalsecrets",
                _external_secret(
                    "shared",
                    {
                        "secretStoreRef": {"name": store, "kind": "ClusterSecretStore"},
                        "data": [{"secretKey": "v", "remoteRef": {"key": "shared"}}],
                    },
                    ns,
                ),
            )
        async with run_operator():
            for ns in others:

                async def synced(ns: str = ns) -> bool:
                    return _decoded(await api.get("v1", "secrets", ns, "shared")) == {
                        "v": b"everyone"
                    }

                await wait(synced, what=f"the Secret in {ns}")
    finally:
        await api.delete(ES, "clustersecretstores", None, store)


async def test_kubernetes_provider_reads_another_namespace_as_the_stores_account(
    api, run_operator, wait
) -> None:
    ns, platform = api.ns, api.namespace("platform")
    await api.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "shared", "namespace": platform},
            "data": {"api-key": base64.b64encode(b"k-123").decode()},
        },
    )
    await api.create(
        "secretstores",
        {
            "apiVersion": ES,
            "kind": "SecretStore",
            "metadata": {"name": "platform", "namespace": ns},
            "spec": {
                "provider": {
                    "kubernetes": {
                        "remoteNamespace": platform,
                        "auth": {"serviceAccount": {"name": "reader"}},
                    }
                }
            },
        },
    )
    await api.create(
        "externalsecrets",
        _external_secret(
            "copy",
            {
                "secretStoreRef": {"name": "platform"},
                "refreshInterval": "1s",
                "data": [
                    {"secretKey": "key", "remoteRef": {"key": "shared", "property": "api-key"}}
                ],
            },
            ns,
        ),
    )
    async with run_operator():
        # The store's ServiceAccount may not read the other namespace yet: real RBAC refuses.
        async def refused() -> bool:
            return _ready(await api.get(ES, "externalsecrets", ns, "copy")) == (
                "False",
                "SecretSyncedError",
            )

        await wait(refused, what="the sync refused by RBAC")
        assert await api.get("v1", "secrets", ns, "copy") is None
        api.plane.ensure_service_account(ns, "reader")
        api.plane.apply(
            [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "metadata": {"name": "read-secrets", "namespace": platform},
                    "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": "reader", "namespace": platform},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Role",
                        "name": "read-secrets",
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
                },
            ]
        )

        async def made() -> bool:
            return _decoded(await api.get("v1", "secrets", ns, "copy")) == {"key": b"k-123"}

        await wait(made, what="the copied Secret once RBAC allows it", timeout=30)
