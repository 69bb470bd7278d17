"""ExternalSecret controller end to end: real kopf + the operator against kmock over HTTP."""

from __future__ import annotations

import base64
from typing import Any

ES = "kustos.io/v1"


def _store(name: str, data: list[dict[str, Any]], namespace: str = "app") -> dict[str, Any]:
    return {
        "apiVersion": ES,
        "kind": "SecretStore",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": {"fake": {"data": data}}},
    }


def _external_secret(name: str, spec: dict[str, Any], namespace: str = "app") -> dict[str, Any]:
    return {
        "apiVersion": ES,
        "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _decoded(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def _ready(es: dict[str, Any] | None) -> tuple[str, str] | None:
    for condition in ((es or {}).get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return condition["status"], condition["reason"]
    return None


async def test_fake_store_syncs_a_secret_with_owner_label_hash_and_events(
    api, run_operator, wait
) -> None:
    await api.create(
        "secretstores",
        _store(
            "fake",
            [
                {"key": "/db/password", "value": "hunter2"},
                {"key": "/db/config", "value": '{"user": "admin", "port": 5432}'},
            ],
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
        ),
    )
    async with run_operator():

        async def synced() -> bool:
            return _ready(await api.get(ES, "externalsecrets", "app", "db")) == (
                "True",
                "SecretSynced",
            )

        await wait(synced, what="Ready=True SecretSynced")
        secret = await api.get("v1", "secrets", "app", "db-creds")
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

        async def created_event() -> bool:  # events are posted after the Secret is written
            return [e["reason"] for e in await api.events("app")] == ["Created"]

        await wait(created_event, what="the Created event")

        # Drift repair: a hand edit (changed value, added key) is reverted.
        await api.patch(
            "v1",
            "secrets",
            "app",
            "db-creds",
            {
                "data": {
                    "password": base64.b64encode(b"edited").decode(),
                    "extra": base64.b64encode(b"x").decode(),
                }
            },
        )

        async def reverted() -> bool:
            current = await api.get("v1", "secrets", "app", "db-creds")
            return current is not None and _decoded(current) == {
                "password": b"hunter2",
                "user": b"admin",
            }

        await wait(reverted, what="hand edit reverted")

        # A deleted managed Secret comes back.
        await api.delete("v1", "secrets", "app", "db-creds")

        async def recreated() -> bool:
            return await api.get("v1", "secrets", "app", "db-creds") is not None

        await wait(recreated, what="Secret recreated")


async def test_template_renders_with_sandboxed_jinja(api, run_operator, wait) -> None:
    await api.create(
        "secretstores", _store("fake", [{"key": "db", "value": '{"user": "app", "pass": "p@ss"}'}])
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
        ),
    )
    async with run_operator():

        async def made() -> bool:
            return await api.get("v1", "secrets", "app", "dsn") is not None

        await wait(made, what="templated Secret")
        secret = await api.get("v1", "secrets", "app", "dsn")
        assert secret is not None
        assert _decoded(secret) == {"dsn": b"postgres://app:p%40ss@db:5432/app", "username": b"app"}
        assert secret["type"] == "kubernetes.io/basic-auth"
        assert secret["metadata"]["labels"]["team"] == "a"


async def test_deletion_policy_delete_removes_the_secret_when_the_remote_key_is_gone(
    api, run_operator, wait
) -> None:
    await api.create("secretstores", _store("fake", [{"key": "token", "value": "t0k"}]))
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
        ),
    )
    async with run_operator():

        async def made() -> bool:
            return await api.get("v1", "secrets", "app", "tok") is not None

        await wait(made, what="Secret created")
        await api.patch(
            ES, "secretstores", "app", "fake", {"spec": {"provider": {"fake": {"data": []}}}}
        )
        await api.patch(
            ES, "externalsecrets", "app", "tok", {"metadata": {"annotations": {"force-sync": "1"}}}
        )

        async def gone() -> bool:
            return await api.get("v1", "secrets", "app", "tok") is None

        await wait(gone, what="Secret deleted")

        async def reason() -> bool:
            return _ready(await api.get(ES, "externalsecrets", "app", "tok")) == (
                "True",
                "SecretDeleted",
            )

        await wait(reason, what="Ready reason SecretDeleted")


async def test_invalid_store_reports_error_condition_and_event(api, run_operator, wait) -> None:
    await api.create(
        "externalsecrets",
        _external_secret(
            "broken",
            {
                "secretStoreRef": {"name": "missing"},
                "data": [{"secretKey": "a", "remoteRef": {"key": "a"}}],
            },
        ),
    )
    async with run_operator():

        async def failed() -> bool:
            return _ready(await api.get(ES, "externalsecrets", "app", "broken")) == (
                "False",
                "SecretSyncedError",
            )

        await wait(failed, what="Ready=False SecretSyncedError")
        events = await api.events("app", reason="UpdateFailed")
        assert events and "missing" in events[0]["message"]
        assert await api.get("v1", "secrets", "app", "broken") is None


async def test_kubernetes_provider_copies_from_another_namespace(api, run_operator, wait) -> None:
    await api.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "shared", "namespace": "platform"},
            "data": {"api-key": base64.b64encode(b"k-123").decode()},
        },
    )
    await api.create(
        "secretstores",
        {
            "apiVersion": ES,
            "kind": "SecretStore",
            "metadata": {"name": "platform", "namespace": "app"},
            "spec": {"provider": {"kubernetes": {"remoteNamespace": "platform"}}},
        },
    )
    await api.create(
        "externalsecrets",
        _external_secret(
            "copy",
            {
                "secretStoreRef": {"name": "platform"},
                "data": [
                    {"secretKey": "key", "remoteRef": {"key": "shared", "property": "api-key"}}
                ],
            },
        ),
    )
    async with run_operator():

        async def made() -> bool:
            secret = await api.get("v1", "secrets", "app", "copy")
            return secret is not None and _decoded(secret) == {"key": b"k-123"}

        await wait(made, what="copied Secret")
