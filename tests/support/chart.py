"""The deploy/ artefacts installed on a real control plane: CRDs and the chart's controller RBAC.

Tests that run the controllers install exactly what users install:

- :func:`install_crds` applies every CRD of ``deploy/crds/`` (server-side
  apply) and waits until the API server serves them (``Established``);
- :func:`install_controller_rbac` renders the Helm chart (``deploy/helm/render.py``,
  release ``kustos`` in ``kustos-system``) and applies its ServiceAccount,
  ClusterRole and ClusterRoleBinding for the controller — nothing more;
- :func:`render` runs ``deploy/helm/render.py`` with helm's flags (``--set``,
  ``-f``, ``-n``, ``--skip-crds``, ...) and returns the objects;
- :func:`controller_kubeconfig` writes a kubeconfig holding a TokenRequest
  token of that ServiceAccount, so a controller started with it has exactly the
  chart's permissions: a verb missing from the ClusterRole makes a test fail.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube import ControlPlane

__all__ = [
    "CONTROLLER_ACCOUNT",
    "RELEASE_NAMESPACE",
    "ROOT",
    "chart_objects",
    "controller_kubeconfig",
    "install_controller_rbac",
    "install_crds",
    "render",
]

ROOT = Path(__file__).resolve().parents[2]
RELEASE_NAMESPACE = "kustos-system"
CONTROLLER_ACCOUNT = "kustos-controller"
_RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def chart_objects() -> list[dict[str, Any]]:
    """Every object the chart renders (release ``kustos``, namespace ``kustos-system``)."""
    spec = importlib.util.spec_from_file_location("kustos_render", ROOT / "deploy/helm/render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [doc for doc in yaml.safe_load_all(module.render_chart()) if doc]


def render(*args: str) -> list[dict[str, Any]]:
    """``python deploy/helm/render.py ARGS`` (helm template's flags), run as a user runs it; its objects."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy/helm/render.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"render.py {' '.join(args)}: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def install_crds(plane: ControlPlane, *, timeout: float = 60.0) -> list[str]:
    """Apply every CRD in ``deploy/crds/`` and wait until each is Established; their names."""
    names = []
    for path in sorted((ROOT / "deploy/crds").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                plane.apply(document)
                names.append(document["metadata"]["name"])
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = plane.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = ((crd or {}).get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"CRD {name} was not Established: {conditions}")
            time.sleep(0.1)
    return names


def install_controller_rbac(plane: ControlPlane) -> list[dict[str, Any]]:
    """Apply the chart's RBAC objects (and its namespace); return them."""
    plane.ensure_namespace(RELEASE_NAMESPACE)
    objects = [o for o in chart_objects() if o["kind"] in _RBAC_KINDS]
    assert any(o["kind"] == "ClusterRole" for o in objects), "the chart renders no ClusterRole"
    plane.apply(objects)
    return objects


def controller_kubeconfig(plane: ControlPlane, path: Path) -> Path:
    """A kubeconfig acting as the chart's controller ServiceAccount (a fresh TokenRequest token)."""
    return plane.service_account_kubeconfig(path, RELEASE_NAMESPACE, CONTROLLER_ACCOUNT)
