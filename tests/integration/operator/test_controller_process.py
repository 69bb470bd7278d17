"""``kustos controller run`` as a process, with the kubeconfigs clusters hand out, unmodified.

Each run gets ``KUBECONFIG`` and only ``--kustos-addr/--kustos-token`` (the
Kustos server that unseals SealedSecrets): no other flag. The kubeconfigs:

- the control plane's admin kubeconfig as written (client certificate and
  key, CA, all inline base64 data, as kind and kubeadm write them);
- a bearer-token kubeconfig whose CA is inline data;
- an exec-plugin kubeconfig: a tiny script printing an ExecCredential that
  holds a TokenRequest token of the chart's controller ServiceAccount (so
  this run also has exactly the chart's permissions).

In every form the process unseals a bitnami SealedSecret, syncs an
ExternalSecret from the Kustos server (and a KV change by push), and the
Reloader rolls the Deployment that uses the synced Secret.
"""

from __future__ import annotations

import base64
import datetime
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from kustos.crypto.sealing import load_certificates
from kustos.gitops.sealing import SealFormat, parse_secret, seal_secret
from tests.support.chart import CONTROLLER_ACCOUNT, RELEASE_NAMESPACE
from tests.support.kube import ControlPlane
from tests.support.server import RunningServer, kustos_server

__all__ = ["kustos_server"]

ES = "kustos.io/v1"


def _decoded(secret: dict[str, Any] | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}


def _kubeconfig(form: str, plane: ControlPlane, tmp_path: Path) -> tuple[Path, str]:
    """The kubeconfig of ``form`` and the secret it carries (a token, or the client key)."""
    if form == "client-certificate":
        return plane.kubeconfig, plane.admin_key.decode()
    if form == "token":
        return plane.token_kubeconfig(tmp_path / "token.kubeconfig"), plane.admin_token
    token = plane.service_account_token(RELEASE_NAMESPACE, CONTROLLER_ACCOUNT)
    script = tmp_path / "credential.py"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token},
    }
    script.write_text(f"import json\nprint(json.dumps({credential!r}))\n")
    path = plane.write_kubeconfig(
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
    return path, token


@pytest.mark.parametrize("form", ["client-certificate", "token", "exec"])
async def test_kustos_controller_run_with_each_kubeconfig_form(
    api, wait, kustos_server: RunningServer, tmp_path: Path, form: str
) -> None:
    ns, plane = api.ns, api.plane
    addr, root = kustos_server
    async with httpx.AsyncClient(base_url=addr, headers={"X-Vault-Token": root}, timeout=10) as kv:
        written = await kv.post(
            f"/v1/secret/data/{ns}/db", json={"data": {"password": "first-value"}}
        )
        assert written.status_code == 200, written.text
        certificates = load_certificates((await kv.get("/v1/cert.pem")).content)

    manifest = parse_secret(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sealed", "namespace": ns},
            "stringData": {"api-key": "unsealed-by-the-server"},
        }
    )
    [sealed] = seal_secret(
        manifest,
        certificates=certificates,
        now=datetime.datetime.now(tz=datetime.UTC),
        fmt=SealFormat.bitnami,
    )
    await api.create("sealedsecrets", sealed)
    await api.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kustos-token", "namespace": ns},
            "data": {"token": base64.b64encode(root.encode()).decode()},
        },
    )
    await api.create(
        "secretstores",
        {
            "apiVersion": ES,
            "kind": "SecretStore",
            "metadata": {"name": "kustos", "namespace": ns},
            "spec": {
                "provider": {
                    "kustos": {
                        "server": addr,
                        "auth": {"tokenSecretRef": {"name": "kustos-token", "key": "token"}},
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
            "metadata": {"name": "db", "namespace": ns},
            "spec": {
                "secretStoreRef": {"name": "kustos"},
                "refreshInterval": "1h",
                "data": [
                    {
                        "secretKey": "password",
                        "remoteRef": {"key": f"{ns}/db", "property": "password"},
                    }
                ],
            },
        },
    )
    await api.create(
        "deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "app",
                "namespace": ns,
                "annotations": {"reloader.stakater.com/auto": "true"},
            },
            "spec": {
                "selector": {"matchLabels": {"app": "app"}},
                "template": {
                    "metadata": {"labels": {"app": "app"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "image": "app:1",
                                "envFrom": [{"secretRef": {"name": "db"}}],
                            }
                        ]
                    },
                },
            },
        },
    )

    kubeconfig, credential = _kubeconfig(form, plane, tmp_path)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
    env.pop("KUSTOS_ADDR", None)
    env.pop("KUSTOS_TOKEN", None)
    log = (tmp_path / "controller.log").open("wb")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("kustos")),
            "controller",
            "run",
            "--kustos-addr",
            addr,
            "--kustos-token",
            root,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def output() -> str:
        return (tmp_path / "controller.log").read_text(errors="replace")[-4000:]

    try:

        async def unsealed() -> bool:
            assert process.poll() is None, f"kustos controller run exited:\n{output()}"
            return _decoded(await api.get("v1", "secrets", ns, "sealed")) == {
                "api-key": b"unsealed-by-the-server"
            }

        await wait(unsealed, what="the SealedSecret unsealed", timeout=60)

        async def synced() -> bool:
            return _decoded(await api.get("v1", "secrets", ns, "db")) == {
                "password": b"first-value"
            }

        await wait(synced, what="the ExternalSecret synced", timeout=30)
        deployment = await api.get("apps/v1", "deployments", ns, "app")
        assert deployment is not None and deployment["metadata"]["generation"] == 1

        async with httpx.AsyncClient(
            base_url=addr, headers={"X-Vault-Token": root}, timeout=10
        ) as kv:
            changed = await kv.post(
                f"/v1/secret/data/{ns}/db", json={"data": {"password": "second-value"}}
            )
            assert changed.status_code == 200

        async def rolled() -> bool:
            current = await api.get("apps/v1", "deployments", ns, "app")
            containers = (current or {})["spec"]["template"]["spec"]["containers"]
            names = {e["name"] for e in containers[0].get("env") or []}
            return "STAKATER_DB_SECRET" in names

        await wait(rolled, what="the Deployment rolled after the pushed change", timeout=30)
        assert _decoded(await api.get("v1", "secrets", ns, "db")) == {"password": b"second-value"}
        assert "Traceback" not in output(), output()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
    log_text = (tmp_path / "controller.log").read_text(errors="replace")
    assert "kustos controller connecting to https://127.0.0.1:" in log_text, output()
    lines = credential.strip().splitlines()
    needle = lines[1] if len(lines) > 1 else lines[0]  # a PEM key's first base64 line, or the token
    assert needle not in log_text, "a credential reached the log"
    assert root not in log_text, "the Kustos token reached the log"
