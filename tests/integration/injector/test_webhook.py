"""The injector end to end: a real kube-apiserver calls ``kustos injector`` for every new pod.

Pods are created through the API server as the admin; what comes back is
what the API server stored after calling the webhook (no kubelet runs them).
The webhook is registered twice in one configuration, so every pod is
admitted twice: the second call must add nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.injector import RunningInjector, register_webhook, running_injector
from tests.support.kube import ControlPlane

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"inject-{uuid.uuid4().hex[:6]}"
    control_plane.ensure_namespace(name)
    try:
        yield name
    finally:
        control_plane.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture(scope="module")
def injector(
    control_plane: ControlPlane, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningInjector]:
    with (
        running_injector(
            control_plane,
            tmp_path_factory.mktemp("injector"),
            "--address",
            "https://kustos.kustos-system.svc:8200",
            "--agent-image",
            "kustos:it",
        ) as running,
        register_webhook(control_plane, running, namespace, copies=2),
    ):
        yield running


def _create(plane: ControlPlane, namespace: str, pod: dict[str, Any]) -> Any:
    return plane.request("POST", f"/api/v1/namespaces/{namespace}/pods", json=pod)


def _pod(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "containers": [
                {"name": "app", "image": "busybox", "securityContext": {"runAsUser": 1000}}
            ]
        },
    }


def _count(injector: RunningInjector, outcome: str) -> float:
    return injector.metrics()[f'kustos_injector_admissions_total{{outcome="{outcome}"}}']


def _check_injected(pod: dict[str, Any], *, sidecar: bool = True) -> dict[str, Any]:
    spec = pod["spec"]
    inits = {c["name"]: c for c in spec["initContainers"]}
    expected = {"kustos-agent-init", "kustos-agent"} if sidecar else {"kustos-agent-init"}
    assert set(inits) == expected, list(inits)
    assert inits["kustos-agent-init"]["args"][-1] == "--once"
    if sidecar:
        assert inits["kustos-agent"]["restartPolicy"] == "Always"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["kustos-secrets"]["emptyDir"] == {"medium": "Memory"}
    (source,) = volumes["kustos-token"]["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "kustos"
    assert source["serviceAccountToken"]["path"] == "token"
    (app,) = spec["containers"]
    assert {"name": "kustos-secrets", "mountPath": "/kustos/secrets", "readOnly": True} in app[
        "volumeMounts"
    ]
    for container in inits.values():
        assert container["image"] == "kustos:it"
        assert container["securityContext"]["runAsUser"] == 1000  # the app's user
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["kustos-token"] == "/kustos/token"
    assert pod["metadata"]["annotations"]["kustos.io/agent-inject-status"] == "injected"
    return inits


def test_a_kustos_annotated_pod_comes_back_injected_once(
    control_plane: ControlPlane, namespace: str, injector: RunningInjector
) -> None:
    injected_before, skipped_before = _count(injector, "injected"), _count(injector, "skipped")
    response = _create(
        control_plane,
        namespace,
        _pod(
            "kustos-app",
            {
                "kustos.io/agent-inject": "true",
                "kustos.io/role": "shop",
                "kustos.io/agent-inject-secret-db": "secret/data/shop/db",
                "kustos.io/agent-inject-template-config": "password={{ db.password }}",
            },
        ),
    )
    assert response.status_code == 201, response.text
    stored = control_plane.get(f"/api/v1/namespaces/{namespace}/pods/kustos-app")
    assert stored is not None
    inits = _check_injected(stored)
    args = inits["kustos-agent"]["args"]
    assert args[args.index("--address") + 1] == "https://kustos.kustos-system.svc:8200"
    assert "db=secret/data/shop/db" in args
    assert "config=/kustos/templates/config" in args
    volumes = {v["name"]: v for v in stored["spec"]["volumes"]}
    assert volumes["kustos-templates"]["downwardAPI"]["items"][0]["path"] == "config"
    # Two webhooks, one injection: the second call saw the status annotation and added nothing.
    assert len(stored["spec"]["initContainers"]) == 2
    assert len(stored["spec"]["volumes"]) == 4  # secrets, token, templates + the API token volume
    assert _count(injector, "injected") == injected_before + 1
    assert _count(injector, "skipped") >= skipped_before + 1


def test_a_vault_annotated_pod_is_injected_unchanged(
    control_plane: ControlPlane, namespace: str, injector: RunningInjector
) -> None:
    response = _create(
        control_plane,
        namespace,
        _pod(
            "vault-app",
            {
                "vault.hashicorp.com/agent-inject": "true",
                "vault.hashicorp.com/role": "shop",
                "vault.hashicorp.com/agent-inject-secret-db-creds": "secret/data/shop/db",
                "vault.hashicorp.com/agent-inject-template-db-creds": (
                    '{{ with secret "secret/data/shop/db" }}{{ .Data.data.password }}{{ end }}'
                ),
                "vault.hashicorp.com/agent-pre-populate-only": "true",
                "vault.hashicorp.com/agent-cache-enable": "true",
            },
        ),
    )
    assert response.status_code == 201, response.text
    # The API server passes the webhook's warnings on to the client.
    assert "agent-cache-enable is ignored" in response.headers.get("warning", "")
    stored = control_plane.get(f"/api/v1/namespaces/{namespace}/pods/vault-app")
    assert stored is not None
    inits = _check_injected(stored, sidecar=False)
    assert "db-creds=/kustos/templates/db-creds" in inits["kustos-agent-init"]["args"]


def test_a_pod_recreated_from_an_injected_one_gets_nothing_more(
    control_plane: ControlPlane, namespace: str, injector: RunningInjector
) -> None:
    first = _create(
        control_plane,
        namespace,
        _pod(
            "original",
            {
                "kustos.io/agent-inject": "true",
                "kustos.io/role": "shop",
                "kustos.io/agent-inject-secret-db": "secret/data/shop/db",
            },
        ),
    ).json()
    copy = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "copy", "annotations": first["metadata"]["annotations"]},
        "spec": {key: first["spec"][key] for key in ("containers", "initContainers", "volumes")},
    }
    injected_before = _count(injector, "injected")
    response = _create(control_plane, namespace, copy)
    assert response.status_code == 201, response.text
    again = response.json()["spec"]
    assert [c["name"] for c in again["initContainers"]] == ["kustos-agent-init", "kustos-agent"]
    assert [v["name"] for v in again["volumes"]] == [v["name"] for v in first["spec"]["volumes"]]
    assert _count(injector, "injected") == injected_before


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {"kustos.io/agent-inject": "yes", "kustos.io/role": "shop"},
            'annotation kustos.io/agent-inject must be "true" or "false", got \'yes\'',
        ),
        (
            {
                "vault.hashicorp.com/agent-inject": "true",
                "vault.hashicorp.com/role": "shop",
                "vault.hashicorp.com/agent-inject-secret-db": "secret/data/shop/db",
                "vault.hashicorp.com/agent-limits-mem": "a lot",
            },
            "annotation vault.hashicorp.com/agent-limits-mem must be a Kubernetes quantity",
        ),
    ],
)
def test_a_malformed_annotation_is_refused_with_a_clear_message(
    control_plane: ControlPlane,
    namespace: str,
    injector: RunningInjector,
    annotations: dict[str, str],
    message: str,
) -> None:
    name = f"bad-{uuid.uuid4().hex[:6]}"
    response = _create(control_plane, namespace, _pod(name, annotations))
    assert response.status_code == 400, response.text
    status = response.json()
    assert status["kind"] == "Status" and status["code"] == 400
    assert "denied the request: kustos injector: " in status["message"]
    assert message in status["message"], status["message"]
    assert control_plane.get(f"/api/v1/namespaces/{namespace}/pods/{name}") is None
