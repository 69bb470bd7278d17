"""``kustos.kube`` against a real kube-apiserver: every kubeconfig form, in-cluster, and renewal on 401.

The kubeconfigs are the fixture's own (client certificate and CA inline as
base64 data, as kind and kubeadm write them; a static token), an exec plugin
(a tiny script printing an ExecCredential) and a pod's ServiceAccount
directory holding a real TokenRequest token.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

from kustos.errors import PermissionDeniedError
from kustos.kube import (
    NAMESPACES,
    SECRETS,
    KubeClient,
    load_in_cluster,
    load_kubeconfig,
)
from tests.support.kube import ControlPlane


def _namespace(control_plane: ControlPlane) -> str:
    name = f"kube-{uuid.uuid4().hex[:8]}"
    control_plane.ensure_namespace(name)
    return name


async def _round_trip(kube: KubeClient, namespace: str) -> None:
    """Create a Secret, read it back, list it, delete it."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "probe", "namespace": namespace},
        "stringData": {"k": "v"},
    }
    await kube.create(SECRETS, body=body, namespace=namespace)
    found = await kube.get(SECRETS, name="probe", namespace=namespace)
    assert found is not None and found["data"] == {"k": "dg=="}
    assert [s["metadata"]["name"] for s in await kube.list(SECRETS, namespace=namespace)] == [
        "probe"
    ]
    assert await kube.delete(SECRETS, name="probe", namespace=namespace)


async def test_the_fixtures_client_certificate_kubeconfig_unmodified(
    control_plane: ControlPlane,
) -> None:
    connection = await load_kubeconfig(path=str(control_plane.kubeconfig))
    assert connection.certificate_path and connection.credentials is not None
    async with KubeClient(connection=connection) as kube:
        await _round_trip(kube, _namespace(control_plane))


async def test_a_token_kubeconfig_with_inline_ca_data(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    path = control_plane.token_kubeconfig(tmp_path / "token.kubeconfig")
    connection = await load_kubeconfig(path=str(path))
    assert connection.certificate_path is None
    async with KubeClient(connection=connection) as kube:
        await _round_trip(kube, _namespace(control_plane))


def _exec_kubeconfig(control_plane: ControlPlane, tmp_path: Path, tokens: list[str]) -> Path:
    """An exec plugin printing ``tokens[n]`` on its n-th run (the last one from then on)."""
    runs = tmp_path / "runs"
    script = tmp_path / "credential.py"
    script.write_text(
        "import json, pathlib\n"
        f"runs = pathlib.Path({str(runs)!r})\n"
        "n = int(runs.read_text()) if runs.exists() else 0\n"
        "runs.write_text(str(n + 1))\n"
        f"tokens = {json.dumps(tokens)}\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
        "'kind': 'ExecCredential', 'status': {'token': tokens[min(n, len(tokens) - 1)]}}))\n"
    )
    return control_plane.write_kubeconfig(
        tmp_path / "exec.kubeconfig",
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": sys.executable,
                "args": [str(script)],
                "interactiveMode": "Never",
            }
        },
    )


async def test_an_exec_plugin_kubeconfig_renews_a_refused_token(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    path = _exec_kubeconfig(
        control_plane, tmp_path, ["not-a-valid-token", control_plane.admin_token]
    )
    connection = await load_kubeconfig(path=str(path))
    async with KubeClient(connection=connection) as kube:
        # The first token is refused (401): the plugin runs again and the request is resent.
        assert await kube.get(NAMESPACES, name="default") is not None
        assert (tmp_path / "runs").read_text() == "2"
        await _round_trip(kube, _namespace(control_plane))
    assert (tmp_path / "runs").read_text() == "2", "a good token is kept, not fetched per request"


async def test_a_refused_credential_that_stays_refused_is_an_error(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    path = _exec_kubeconfig(control_plane, tmp_path, ["still-not-valid"])
    connection = await load_kubeconfig(path=str(path))
    async with KubeClient(connection=connection) as kube:
        with pytest.raises(PermissionDeniedError, match="401"):
            await kube.get(NAMESPACES, name="default")


async def test_in_cluster_service_account_with_a_rotated_token(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    namespace = _namespace(control_plane)
    control_plane.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "secrets", "namespace": namespace},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["secrets"],
                        "verbs": ["get", "list", "create", "delete"],
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "secrets", "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "secrets",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "pod", "namespace": namespace}],
            },
        ]
    )
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "ca.crt").write_bytes(control_plane.ca_pem)
    (directory / "namespace").write_text(namespace)
    (directory / "token").write_text("expired-or-revoked")
    environ = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(control_plane.port),
    }
    connection = await load_in_cluster(environ=environ, directory=directory)
    assert connection.default_namespace == namespace
    async with KubeClient(connection=connection) as kube:
        with pytest.raises(PermissionDeniedError):
            await kube.list(SECRETS, namespace=namespace)
        # The kubelet rotates the projected token: the 401 makes us read the file again.
        (directory / "token").write_text(control_plane.service_account_token(namespace, "pod"))
        await _round_trip(kube, namespace)
        with pytest.raises(PermissionDeniedError, match="403"):
            await kube.list(SECRETS, namespace="default")
