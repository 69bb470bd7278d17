"""The Helm chart, rendered manifests, CRDs and Dockerfile: they parse and pass schema checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]


def _renderer() -> Any:
    spec = importlib.util.spec_from_file_location(
        "kustos_chart_render", ROOT / "deploy/helm/render.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _walk_schema(node: dict[str, Any], path: str) -> None:
    """Structural-schema rules of apiextensions/v1, plus no `default:` (Argo CD drift)."""
    assert "default" not in node, f"{path}: server-side default"
    assert (
        "type" in node
        or node.get("x-kubernetes-preserve-unknown-fields")
        or node.get("x-kubernetes-int-or-string")
    ), f"{path}: no type"
    if "properties" in node:
        assert node.get("type") == "object", f"{path}: properties on a non-object"
        assert "additionalProperties" not in node, f"{path}: properties and additionalProperties"
        for name, child in node["properties"].items():
            _walk_schema(child, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        _walk_schema(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        assert node.get("type") == "array", f"{path}: items on a non-array"
        _walk_schema(node["items"], f"{path}[]")


def _check_crd(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert spec["scope"] in ("Namespaced", "Cluster")
    versions = spec["versions"]
    assert sum(1 for v in versions if v["storage"]) == 1
    for version in versions:
        assert version["subresources"] == {"status": {}}
        schema = version["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object" and {"spec", "status"} <= set(schema["properties"])
        _walk_schema(schema, f"{crd['metadata']['name']}/{version['name']}")


def _check_workload(obj: dict[str, Any]) -> None:
    spec = obj["spec"]
    template = spec["template"]
    labels = template["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts_needed = set()
    for container in pod["containers"]:
        assert container["name"] and container["image"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert "limits" in container["resources"]
        mounts_needed |= {mount["name"] for mount in container.get("volumeMounts", [])}
    declared = {v["name"] for v in pod.get("volumes", [])} | {
        c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])
    }
    assert mounts_needed <= declared, (
        f"{obj['metadata']['name']}: undeclared volumes {mounts_needed - declared}"
    )


def test_every_crd_is_structural_without_defaults() -> None:
    crds = [
        doc
        for path in sorted((ROOT / "deploy/crds").glob("*.yaml"))
        for doc in _docs(path.read_text())
    ]
    assert {c["metadata"]["name"] for c in crds} == {
        "externalsecrets.kustos.io",
        "secretstores.kustos.io",
        "clustersecretstores.kustos.io",
        "sealedsecrets.kustos.io",
        "sealedsecrets.bitnami.com",
        "externalsecrets.external-secrets.io",
        "secretstores.external-secrets.io",
        "clustersecretstores.external-secrets.io",
        "clusterexternalsecrets.external-secrets.io",
        "pushsecrets.external-secrets.io",
    }
    for crd in crds:
        _check_crd(crd)
    chart_crds = sorted(p.name for p in (ROOT / "deploy/helm/kustos/crds").glob("*.yaml"))
    assert chart_crds == sorted(p.name for p in (ROOT / "deploy/crds").glob("*.yaml"))
    for name in chart_crds:
        assert (ROOT / "deploy/helm/kustos/crds" / name).read_text() == (
            ROOT / "deploy/crds" / name
        ).read_text()


def test_the_external_secrets_crds_are_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_eso_crds", ROOT / "scripts/generate_eso_crds.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, text in module.files().items():
        assert (ROOT / "deploy/crds" / name).read_text() == text, (
            "run: python scripts/generate_eso_crds.py"
        )


def test_the_eso_group_can_be_turned_off_in_the_chart() -> None:
    objects = _docs(_renderer().render_chart(overrides={"controller.externalSecretsGroup": False}))
    (controller,) = [
        o for o in objects if o["kind"] == "Deployment" and "controller" in o["metadata"]["name"]
    ]
    assert "--no-eso-group" in controller["spec"]["template"]["spec"]["containers"][0]["args"]
    (role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    assert all("external-secrets.io" not in rule["apiGroups"] for rule in role["rules"])


def test_rendered_manifests_are_committed_and_pass_checks() -> None:
    rendered = _renderer().render_chart()
    assert (ROOT / "deploy/manifests/kustos.yaml").read_text() == rendered, (
        "run: python deploy/helm/render.py > deploy/manifests/kustos.yaml"
    )
    objects = _docs(rendered)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {
        ("Deployment", "kustos-controller"),
        ("StatefulSet", "kustos-server"),
        ("ClusterRole", "kustos-controller"),
        ("ServiceAccount", "kustos-controller"),
        ("Service", "kustos-server"),
    } <= kinds
    for obj in objects:
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"]
        if obj["kind"] == "CustomResourceDefinition":
            _check_crd(obj)
        elif obj["kind"] in ("Deployment", "StatefulSet"):
            assert obj["metadata"]["namespace"] == "kustos-system"
            _check_workload(obj)
        elif obj["kind"] == "ClusterRole":
            for rule in obj["rules"]:
                assert (
                    "*" not in rule["verbs"]
                    and "*" not in rule["resources"]
                    and "*" not in rule["apiGroups"]
                )
                if "secrets" in rule["resources"]:
                    assert set(rule["verbs"]) <= {
                        "get",
                        "list",
                        "watch",
                        "create",
                        "patch",
                        "delete",
                    }
                if "serviceaccounts" in rule["resources"]:
                    assert rule["verbs"] == ["impersonate"]


def test_postgres_values_drop_the_volume_claim_and_pass_the_dsn() -> None:
    objects = _docs(
        _renderer().render_chart(
            overrides={"server.postgres.dsnSecret": "pg", "server.replicas": 3}
        )
    )
    (server,) = [o for o in objects if o["kind"] == "StatefulSet"]
    assert "volumeClaimTemplates" not in server["spec"] and server["spec"]["replicas"] == 3
    (container,) = server["spec"]["template"]["spec"]["containers"]
    # the DSN (with its password) is an environment variable, never an argument
    assert not [a for a in container["args"] if "storage" in a or "postgres" in a.lower()]
    (dsn,) = [e for e in container["env"] if e["name"] == "KUSTOS_STORAGE"]
    assert dsn["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "dsn"}
    _check_workload(server)


def test_renderer_rejects_what_it_does_not_understand() -> None:
    render = _renderer()._render
    with pytest.raises(ValueError, match="unsupported"):
        render('{{ include "x" . }}', {"Values": {}})
    with pytest.raises(KeyError, match="missing"):
        render("{{ .Values.nope }}", {"Values": {}})


def test_dockerfile_is_slim_and_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM python:3.11-slim") == 2
    assert "USER 10001:10001" in text
    assert 'ENTRYPOINT ["kustos"]' in text
