"""The chart's injector templates: rendered with ``injector.enabled``, they pass a real API server's validation."""

from __future__ import annotations

import base64
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
    text = module.render_chart(overrides=overrides)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _injector_objects(plane_ca: bytes) -> list[dict[str, Any]]:
    objects = _rendered(
        **{
            "injector.enabled": True,
            "injector.tls.caBundle": base64.b64encode(plane_ca).decode(),
            "injector.failurePolicy": "Fail",
        }
    )
    return [
        o
        for o in objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "injector"
    ]


def test_the_injector_is_off_by_default() -> None:
    assert not [o for o in _rendered() if "injector" in o["metadata"]["name"]]


def test_enabled_it_renders_a_webhook_with_its_ca_bundle_and_a_locked_down_pod() -> None:
    objects = {o["kind"]: o for o in _injector_objects(b"-----BEGIN CERTIFICATE-----\n")}
    assert set(objects) == {"Service", "Deployment", "MutatingWebhookConfiguration"}
    (hook,) = objects["MutatingWebhookConfiguration"]["webhooks"]
    assert base64.b64decode(hook["clientConfig"]["caBundle"]).startswith(b"-----BEGIN")
    assert hook["clientConfig"]["service"] == {
        "name": "kustos-injector",
        "namespace": "kustos-system",
        "path": "/mutate",
        "port": 443,
    }
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    selector = hook["namespaceSelector"]["matchExpressions"][0]
    assert "kustos-system" in selector["values"] and "kube-system" in selector["values"]
    annotations = objects["Deployment"]["metadata"]["annotations"]
    assert annotations["secret.reloader.stakater.com/reload"] == "kustos-injector-tls"
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["args"][0] == "injector"
    assert "--address=http://kustos-server.kustos-system.svc:8200" in container["args"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_rendered_objects_pass_the_api_servers_validation(control_plane: ControlPlane) -> None:
    control_plane.ensure_namespace("kustos-system")
    collections = {
        "Service": "/api/v1/namespaces/kustos-system/services",
        "Deployment": "/apis/apps/v1/namespaces/kustos-system/deployments",
        "MutatingWebhookConfiguration": (
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
        ),
    }
    for obj in _injector_objects(control_plane.ca_pem):
        collection = collections[obj["kind"]]
        response = control_plane.request("POST", f"{collection}?dryRun=All", json=obj)
        assert response.status_code == 201, f"{obj['kind']}: {response.text}"
