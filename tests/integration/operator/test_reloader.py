"""The Reloader on a real kube-apiserver: every annotation form, both strategies, once per change, none on restart.

A workload's ``metadata.generation`` counts the changes to its spec (the API
server bumps it on each one), so "rolled exactly once" is ``generation == 2``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any

import pytest

PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}


def _workload(
    kind: str,
    name: str,
    namespace: str,
    annotations: dict[str, str],
    *,
    secret: str | None = None,
    configmap: str | None = None,
    template_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    env_from: list[dict[str, Any]] = []
    if secret:
        env_from.append({"secretRef": {"name": secret}})
    if configmap:
        env_from.append({"configMapRef": {"name": configmap}})
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}, "annotations": template_annotations or {}},
            "spec": {"containers": [{"name": "main", "image": "app:1", "envFrom": env_from}]},
        },
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": spec,
    }


def _env(workload: dict[str, Any] | None) -> dict[str, str]:
    assert workload is not None
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container.get("env") or []}


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


async def _generation(api: Any, kind: str, name: str) -> int:
    body = await api.get("apps/v1", PLURALS[kind], api.ns, name)
    assert body is not None
    return int(body["metadata"]["generation"])


async def test_secret_change_rolls_annotated_workloads_once_and_restart_rolls_nothing(
    api, run_operator, wait
) -> None:
    ns = api.ns
    await api.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": ns},
            "data": {"password": _b64("one")},
        },
    )
    workloads = [
        ("Deployment", "auto", {"reloader.stakater.com/auto": "true"}, "db"),
        ("StatefulSet", "named", {"secret.reloader.stakater.com/reload": "db"}, "db"),
        ("DaemonSet", "plain", {}, "db"),
        ("Deployment", "other", {"reloader.stakater.com/auto": "true"}, "unrelated"),
    ]
    for kind, name, marks, secret in workloads:
        await api.create(PLURALS[kind], _workload(kind, name, ns, marks, secret=secret))

    async with run_operator():
        await asyncio.sleep(1.0)  # the initial listing must not roll anything
        assert await _generation(api, "Deployment", "auto") == 1
        await api.patch("v1", "secrets", ns, "db", {"data": {"password": _b64("two")}})

        async def rolled() -> bool:
            auto = _env(await api.get("apps/v1", "deployments", ns, "auto"))
            named = _env(await api.get("apps/v1", "statefulsets", ns, "named"))
            return "STAKATER_DB_SECRET" in auto and "STAKATER_DB_SECRET" in named

        await wait(rolled, what="annotated workloads rolled")
        await asyncio.sleep(0.5)

    expected = _sha1("password=two")
    assert _env(await api.get("apps/v1", "deployments", ns, "auto")) == {
        "STAKATER_DB_SECRET": expected
    }
    assert _env(await api.get("apps/v1", "statefulsets", ns, "named")) == {
        "STAKATER_DB_SECRET": expected
    }
    assert _env(await api.get("apps/v1", "daemonsets", ns, "plain")) == {}
    assert _env(await api.get("apps/v1", "deployments", ns, "other")) == {}
    # Exactly one change each: created (1) + one rollout (2).
    assert await _generation(api, "Deployment", "auto") == 2
    assert await _generation(api, "StatefulSet", "named") == 2
    assert await _generation(api, "DaemonSet", "plain") == 1

    # A restart with unchanged data patches nothing.
    async with run_operator():
        await asyncio.sleep(1.5)
    assert await _generation(api, "Deployment", "auto") == 2
    assert await _generation(api, "StatefulSet", "named") == 2

    # A change made while the operator was down is applied on the next start.
    await api.patch("v1", "secrets", ns, "db", {"data": {"password": _b64("three")}})
    async with run_operator():
        third = _sha1("password=three")

        async def caught_up() -> bool:
            return _env(await api.get("apps/v1", "deployments", ns, "auto")) == {
                "STAKATER_DB_SECRET": third
            }

        await wait(caught_up, what="missed change applied after restart")
    assert await _generation(api, "Deployment", "auto") == 3


FORMS = [
    # (workload annotations, template annotations, source kind, source annotations, rolls?)
    ({"reloader.stakater.com/auto": "true"}, {}, "configmap", {}, True),
    ({"secret.reloader.stakater.com/auto": "true"}, {}, "secret", {}, True),
    ({"secret.reloader.stakater.com/auto": "true"}, {}, "configmap", {}, False),
    ({"configmap.reloader.stakater.com/auto": "true"}, {}, "configmap", {}, True),
    ({"configmap.reloader.stakater.com/reload": "src,other"}, {}, "configmap", {}, True),
    ({"secret.reloader.stakater.com/reload": "other"}, {}, "secret", {}, False),
    ({}, {"reloader.stakater.com/auto": "true"}, "secret", {}, True),
    ({"reloader.stakater.com/search": "true"}, {}, "secret", {"reloader.stakater.com/match": "true"}, True),
    ({"reloader.stakater.com/search": "true"}, {}, "secret", {}, False),
    ({"reloader.stakater.com/auto": "true"}, {}, "secret", {"reloader.stakater.com/ignore": "true"}, False),
]  # fmt: skip


@pytest.mark.parametrize("strategy", ["env-vars", "annotations"])
async def test_every_annotation_form_and_strategy(api, run_operator, wait, strategy: str) -> None:
    from kustos.operator.reloading import Strategy

    ns = api.ns
    for index, (marks, template, kind, source_annotations, _) in enumerate(FORMS):
        source = f"src-{index}"
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret" if kind == "secret" else "ConfigMap",
            "metadata": {"name": source, "namespace": ns, "annotations": source_annotations},
        }
        if kind == "secret":
            body["data"] = {"v": _b64("1")}
        else:
            body["data"] = {"v": "1"}
        await api.create("secrets" if kind == "secret" else "configmaps", body)
        fixed = {key: value.replace("src", source) for key, value in marks.items()}
        await api.create(
            "deployments",
            _workload(
                "Deployment",
                f"w-{index}",
                ns,
                fixed,
                secret=source if kind == "secret" else None,
                configmap=source if kind == "configmap" else None,
                template_annotations=template,
            ),
        )
    async with run_operator(reload_strategy=Strategy(strategy)):
        await asyncio.sleep(1.0)
        for index, (_, _, kind, _, _) in enumerate(FORMS):
            plural = "secrets" if kind == "secret" else "configmaps"
            value = _b64("2") if kind == "secret" else "2"
            await api.patch("v1", plural, ns, f"src-{index}", {"data": {"v": value}})
        expected = [index for index, form in enumerate(FORMS) if form[4]]

        async def rolled() -> bool:
            for index in expected:
                if await _generation(api, "Deployment", f"w-{index}") < 2:
                    return False
            return True

        await wait(rolled, what=f"workloads {expected} rolled", timeout=30)
        await asyncio.sleep(1.0)

    for index, form in enumerate(FORMS):
        deployment = await api.get("apps/v1", "deployments", ns, f"w-{index}")
        assert deployment is not None
        generation = int(deployment["metadata"]["generation"])
        assert generation == (2 if form[4] else 1), f"form {index} {form}: generation {generation}"
        if not form[4]:
            continue
        kind = form[2]
        template = deployment["spec"]["template"]["metadata"]["annotations"]
        origin = json.loads(template["reloader.stakater.com/last-reloaded-from"])
        assert origin["name"] == f"src-{index}" and origin["namespace"] == ns
        env = _env(deployment)
        if strategy == "env-vars":
            name = f"STAKATER_SRC_{index}_{'SECRET' if kind == 'secret' else 'CONFIGMAP'}"
            assert env == {name: _sha1("v=2")}
        else:
            assert env == {}
            assert json.loads(template["reloader.kustos.io/hashes"])
