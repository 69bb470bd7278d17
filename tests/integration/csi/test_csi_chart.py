"""The chart's CSI provider DaemonSet: off by default; enabled, it passes a real API server's validation."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube import ControlPlane

ROOT = Path(__file__).resolve().parents[3]


def _rendered(**overrides: Any) -> list[dict[str, Any]]:
    spec = importlib.util.spec_from_file_location("chart_render", ROOT / "deploy/helm/render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [doc for doc in yaml.safe_load_all(module.render_chart(overrides=overrides)) if doc]


def _daemonset(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "DaemonSet"]


def test_the_provider_is_off_by_default_and_enabled_serves_the_drivers_directory() -> None:
    assert _daemonset(_rendered()) == []
    (daemonset,) = _daemonset(_rendered(**{"csi.enabled": True}))
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["args"][:2] == [
        "csi-provider",
        "--address=http://kustos-server.kustos-system.svc:8200",
    ]
    assert "--socket=/var/run/secrets-store-csi-providers/kustos.sock" in container["args"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    (volume,) = pod["volumes"]
    assert volume["hostPath"]["path"] == "/var/run/secrets-store-csi-providers"


def test_the_rendered_daemonset_passes_the_api_servers_validation(
    control_plane: ControlPlane,
) -> None:
    control_plane.ensure_namespace("kustos-system")
    (daemonset,) = _daemonset(_rendered(**{"csi.enabled": True}))
    response = control_plane.request(
        "POST", "/apis/apps/v1/namespaces/kustos-system/daemonsets?dryRun=All", json=daemonset
    )
    assert response.status_code == 201, response.text
