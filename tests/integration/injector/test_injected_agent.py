"""The injector's containers, run: the command line a real API server stored is one ``kustos agent`` runs.

No kubelet runs here, so this test plays its part for the volumes the
injector declared: the projected token becomes a TokenRequest token with the
volume's audience, each downward-API item becomes a file holding the
annotation it names, and the memory volume a temporary directory. Then the
init container's arguments and the sidecar's are run as they are, against a
real ``kustos server`` whose kubernetes auth asks the same API server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.injector import register_webhook, running_injector
from tests.support.kube import ControlPlane
from tests.support.kubeauth import configure_kubernetes_auth, write_role
from tests.support.server import RunningServer, start_server

pytestmark = pytest.mark.slow

KUSTOS = str(Path(sys.executable).parent / "kustos")


@pytest.fixture(scope="module")
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"agent-run-{uuid.uuid4().hex[:6]}"
    control_plane.ensure_service_account(name, "app")
    try:
        yield name
    finally:
        control_plane.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture(scope="module")
def server(
    control_plane: ControlPlane, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("agent-run")) as running:
        configure_kubernetes_auth(control_plane, running.addr, running.root_token)
        headers = {"X-Vault-Token": running.root_token}
        httpx.post(
            f"{running.addr}/v1/sys/policies/acl/shop-read",
            headers=headers,
            json={"policy": 'path "secret/data/shop/*" { capabilities = ["read"] }'},
        ).raise_for_status()
        write_role(
            running.addr,
            running.root_token,
            "shop",
            namespaces=[namespace],
            service_accounts=["app"],
            policies=["shop-read"],
        )
        _put(running, {"user": "app", "password": "first"})
        yield running


def _put(server: RunningServer, data: dict[str, str]) -> None:
    httpx.post(
        f"{server.addr}/v1/secret/data/shop/db",
        headers={"X-Vault-Token": server.root_token},
        json={"data": data},
    ).raise_for_status()


def _injected_pod(
    plane: ControlPlane, server: RunningServer, namespace: str, base: Path
) -> dict[str, Any]:
    with (
        running_injector(plane, base / "injector", address=server.addr) as injector,
        register_webhook(plane, injector, namespace),
    ):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "shop",
                "annotations": {
                    "kustos.io/agent-inject": "true",
                    "kustos.io/role": "shop",
                    "kustos.io/agent-inject-secret-db": "secret/data/shop/db",
                    "kustos.io/agent-inject-secret-password": "secret/data/shop/db#password",
                    "kustos.io/agent-inject-template-app.conf": "user={{ db.user }}\n",
                    "vault.hashicorp.com/agent-inject-template-dsn": (
                        '{{ with secret "secret/data/shop/db" }}'
                        "postgres://{{ .Data.data.user }}:{{ .Data.data.password }}@db{{ end }}"
                    ),
                },
            },
            "spec": {
                "serviceAccountName": "app",
                "containers": [{"name": "app", "image": "busybox"}],
            },
        }
        response = plane.request("POST", f"/api/v1/namespaces/{namespace}/pods", json=pod)
        assert response.status_code == 201, response.text
        return dict(response.json())


def _localise(
    plane: ControlPlane, pod: dict[str, Any], namespace: str, base: Path
) -> dict[str, str]:
    """The pod's volumes as local paths: mount path -> directory (what the kubelet would do)."""
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    (source,) = volumes["kustos-token"]["projected"]["sources"]
    projection = source["serviceAccountToken"]
    token_dir = base / "token"
    token_dir.mkdir()
    (token_dir / projection["path"]).write_text(
        plane.service_account_token(
            namespace,
            pod["spec"]["serviceAccountName"],
            audiences=[projection["audience"]],
            seconds=projection["expirationSeconds"],
        )
    )
    templates_dir = base / "templates"
    templates_dir.mkdir()
    annotations = pod["metadata"]["annotations"]
    for item in volumes["kustos-templates"]["downwardAPI"]["items"]:
        key = item["fieldRef"]["fieldPath"].removeprefix("metadata.annotations['")[:-2]
        (templates_dir / item["path"]).write_text(annotations[key])
    secrets_dir = base / "secrets"
    secrets_dir.mkdir()
    (sidecar,) = [c for c in pod["spec"]["initContainers"] if c["name"] == "kustos-agent"]
    mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
    return {
        mounts["kustos-token"]: str(token_dir),
        mounts["kustos-templates"]: str(templates_dir),
        mounts["kustos-secrets"]: str(secrets_dir),
    }


def _args(container: dict[str, Any], paths: dict[str, str]) -> list[str]:
    args: list[str] = []
    for arg in container["args"]:
        for mount, local in paths.items():
            if arg == mount or arg.startswith(mount + "/") or f"={mount}/" in arg:
                arg = arg.replace(mount, local, 1)
        args.append(arg)
    return args


def _wait(check: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_injected_init_container_and_sidecar_run_as_stored(
    control_plane: ControlPlane, server: RunningServer, namespace: str, tmp_path: Path
) -> None:
    pod = _injected_pod(control_plane, server, namespace, tmp_path)
    paths = _localise(control_plane, pod, namespace, tmp_path)
    containers = {c["name"]: c for c in pod["spec"]["initContainers"]}
    directory = Path(paths["/kustos/secrets"])

    init = subprocess.run(
        [KUSTOS, *_args(containers["kustos-agent-init"], paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    files = {p.name: p for p in directory.iterdir() if not p.name.startswith(".")}
    assert set(files) == {"db", "password", "app.conf", "dsn"}
    assert json.loads(files["db"].read_text()) == {"password": "first", "user": "app"}
    assert files["password"].read_text() == "first"
    assert files["app.conf"].read_text() == "user=app\n"
    assert files["dsn"].read_text() == "postgres://app:first@db"
    assert all(p.stat().st_mode & 0o777 == 0o400 for p in files.values())

    sidecar = subprocess.Popen(
        [KUSTOS, *_args(containers["kustos-agent"], paths), "--listen", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait(lambda: (directory / "password").exists(), "the sidecar's first render")
        _put(server, {"user": "app", "password": "second"})
        _wait(
            lambda: (
                (directory / "password").exists()
                and (directory / "password").read_text() == "second"
            ),
            "the change to reach the file",
        )
        _wait(lambda: (directory / "dsn").read_text() == "postgres://app:second@db", "dsn")
    finally:
        os.killpg(sidecar.pid, signal.SIGTERM)
        output = sidecar.communicate(timeout=30)[0].decode(errors="replace")
    assert sidecar.returncode == 0, output
    assert [p.name for p in directory.iterdir() if not p.name.startswith(".")] == [], output
