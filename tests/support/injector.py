"""A real ``kustos injector`` in a subprocess, registered with a real API server as a webhook.

:func:`running_injector` issues the injector a serving certificate from the
control plane's CA (SAN ``127.0.0.1``), starts ``kustos injector`` on a free
loopback port and waits for ``/healthz``. :func:`register_webhook` creates a
MutatingWebhookConfiguration whose ``clientConfig.url`` is
``https://127.0.0.1:<port>/mutate`` with the CA as ``caBundle`` (never a
Service: the API server would dial its ClusterIP), limited to one namespace
so that other tests sharing the control plane are not affected, and waits
until the API server actually calls it (the configuration reaches the
admission chain through an informer, a moment after it is created).
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.kube import ControlPlane
from tests.support.server import free_port

__all__ = ["RunningInjector", "register_webhook", "running_injector"]


@dataclass
class RunningInjector:
    """The injector's address, the CA that signed its certificate, and its process."""

    url: str
    ca_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def tls(self) -> ssl.SSLContext:
        """A client context trusting the CA that signed the injector's certificate."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def metrics(self) -> dict[str, float]:
        """The injector's Prometheus samples, ``name{labels}`` -> value."""
        text = httpx.get(f"{self.url}/metrics", verify=self.tls(), timeout=5).text
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _kustos() -> list[str]:
    script = Path(sys.executable).parent / "kustos"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kustos.cli.main"]


@contextlib.contextmanager
def running_injector(
    plane: ControlPlane, base: Path, *extra: str, address: str = "https://kustos.invalid:8200"
) -> Iterator[RunningInjector]:
    """``kustos injector`` on 127.0.0.1 with a certificate from ``plane``'s CA; stopped after."""
    base.mkdir(parents=True, exist_ok=True)
    cert, key = plane.pki.issue(
        "kustos-injector", dns=["localhost"], ips=["127.0.0.1"], server=True
    )
    cert_path, key_path = base / "tls.crt", base / "tls.key"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    port = free_port()
    log_path = base / "injector.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *_kustos(),
                "injector",
                "--listen",
                f"127.0.0.1:{port}",
                "--tls-cert",
                str(cert_path),
                "--tls-key",
                str(key_path),
                "--address",
                address,
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    injector = RunningInjector(f"https://127.0.0.1:{port}", plane.ca_path, process, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"kustos injector exited {process.returncode}:\n{injector.log()}"
                )
            try:
                if (
                    httpx.get(f"{injector.url}/healthz", verify=injector.tls(), timeout=1).text
                    == "ok"
                ):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"kustos injector did not answer /healthz:\n{injector.log()}")
            time.sleep(0.1)
        yield injector
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _probe_pod(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"probe-{uuid.uuid4().hex[:8]}",
            "namespace": namespace,
            "annotations": {
                "kustos.io/agent-inject": "true",
                "kustos.io/role": "probe",
                "kustos.io/agent-inject-secret-probe": "secret/data/probe",
            },
        },
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }


@contextlib.contextmanager
def register_webhook(
    plane: ControlPlane,
    injector: RunningInjector,
    namespace: str,
    *,
    copies: int = 1,
    timeout: float = 60.0,
) -> Iterator[str]:
    """A MutatingWebhookConfiguration calling ``injector`` for pods in ``namespace``; deleted after.

    ``copies`` > 1 registers the same URL as several webhooks of one
    configuration: the API server calls each in turn on every pod, so each
    pod is admitted ``copies`` times.
    """
    name = f"kustos-injector-{uuid.uuid4().hex[:8]}"
    bundle = base64.b64encode(plane.ca_pem).decode()
    hooks = [
        {
            "name": f"inject-{i}.kustos.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "timeoutSeconds": 10,
            "clientConfig": {"url": f"{injector.url}/mutate", "caBundle": bundle},
            "rules": [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE"],
                    "resources": ["pods"],
                    "scope": "Namespaced",
                }
            ],
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": namespace},
            },
        }
        for i in range(copies)
    ]
    plane.create(
        "mutatingwebhookconfigurations",
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": hooks,
        },
    )
    try:
        path = f"/api/v1/namespaces/{namespace}/pods?dryRun=All"
        deadline = time.monotonic() + timeout
        while True:
            response = plane.request("POST", path, json=_probe_pod(namespace))
            if response.status_code < 300:
                names = [c["name"] for c in response.json()["spec"].get("initContainers", [])]
                if "kustos-agent" in names:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the API server did not call the webhook within {timeout:.0f}s: "
                    f"{response.status_code} {response.text[:500]}\n{injector.log()}"
                )
            time.sleep(0.2)
        yield name
    finally:
        plane.request(
            "DELETE", f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}"
        )
