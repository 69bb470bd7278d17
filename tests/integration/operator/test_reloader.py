"""Reloader end to end: a Secret change rolls exactly the annotated workloads, once; a restart rolls nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any


def _workload(kind: str, name: str, annotations: dict[str, str], secret: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "app", "annotations": annotations},
        "spec": {
            "template": {
                "metadata": {},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "app:1",
                            "envFrom": [{"secretRef": {"name": secret}}],
                        },
                    ]
                },
            }
        },
    }


def _env(workload: dict[str, Any] | None) -> dict[str, str]:
    assert workload is not None
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container.get("env") or []}


def _history_len(cluster: Any, resource: str, name: str) -> int:
    return len(cluster.objects[resource, "app", name].history)


async def test_secret_change_rolls_annotated_workloads_once_and_restart_rolls_nothing(
    api, cluster, run_operator, wait
) -> None:
    await api.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": "app"},
            "data": {"password": base64.b64encode(b"one").decode()},
        },
    )
    await api.create(
        "deployments", _workload("Deployment", "auto", {"reloader.stakater.com/auto": "true"}, "db")
    )
    await api.create(
        "statefulsets",
        _workload("StatefulSet", "named", {"secret.reloader.stakater.com/reload": "db"}, "db"),
    )
    await api.create("daemonsets", _workload("DaemonSet", "plain", {}, "db"))
    await api.create(
        "deployments",
        _workload("Deployment", "other", {"reloader.stakater.com/auto": "true"}, "unrelated"),
    )

    async with run_operator():
        await asyncio.sleep(0.5)  # the initial listing must not roll anything
        assert _env(await api.get("apps/v1", "deployments", "app", "auto")) == {}
        await api.patch(
            "v1", "secrets", "app", "db", {"data": {"password": base64.b64encode(b"two").decode()}}
        )

        async def rolled() -> bool:
            auto = _env(await api.get("apps/v1", "deployments", "app", "auto"))
            named = _env(await api.get("apps/v1", "statefulsets", "app", "named"))
            return "STAKATER_DB_SECRET" in auto and "STAKATER_DB_SECRET" in named

        await wait(rolled, what="annotated workloads rolled")
        await asyncio.sleep(0.3)

    expected = hashlib.sha1(b"password=two", usedforsecurity=False).hexdigest()
    assert _env(await api.get("apps/v1", "deployments", "app", "auto")) == {
        "STAKATER_DB_SECRET": expected
    }
    assert _env(await api.get("apps/v1", "statefulsets", "app", "named")) == {
        "STAKATER_DB_SECRET": expected
    }
    assert _env(await api.get("apps/v1", "daemonsets", "app", "plain")) == {}
    assert _env(await api.get("apps/v1", "deployments", "app", "other")) == {}
    # Exactly one patch each: created + one rollout.
    assert _history_len(cluster, "apps/v1/deployments", "auto") == 2
    assert _history_len(cluster, "apps/v1/statefulsets", "named") == 2
    assert _history_len(cluster, "apps/v1/daemonsets", "plain") == 1

    # A restart with unchanged data patches nothing.
    async with run_operator():
        await asyncio.sleep(1.0)
    assert _history_len(cluster, "apps/v1/deployments", "auto") == 2
    assert _history_len(cluster, "apps/v1/statefulsets", "named") == 2

    # A change made while the operator was down is applied on the next start.
    await api.patch(
        "v1", "secrets", "app", "db", {"data": {"password": base64.b64encode(b"three").decode()}}
    )
    async with run_operator():
        third = hashlib.sha1(b"password=three", usedforsecurity=False).hexdigest()

        async def caught_up() -> bool:
            return _env(await api.get("apps/v1", "deployments", "app", "auto")) == {
                "STAKATER_DB_SECRET": third
            }

        await wait(caught_up, what="missed change applied after restart")
