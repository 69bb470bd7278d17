"""The chart's manifests, rendered with production values, are accepted by a real kube-apiserver.

Each case renders ``deploy/helm/render.py`` with helm's flags (``-f``,
``--set``, ``-n``, ``--skip-crds``, ``--crds-only``, ``--crd-groups``) and
applies the result to the session's control plane with ``kubectl apply
--server-side --dry-run=server``: the API server decodes, defaults and
validates every object (schemas, RBAC escalation, immutable fields) exactly as
for a real install, and stores nothing, so no webhook configuration or Service
is ever left for the API server to dial. Only cert-manager's ``Certificate``
is left out of the apply (cert-manager's CRD is not installed here); its shape
is checked instead.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import ROOT, render
from tests.support.kube import ControlPlane

PRODUCTION = """\
server:
  replicas: 3
  keyProvider: shamir
  postgres: {dsnSecret: kustos-postgres}
  tls:
    enabled: true
    certManager: {enabled: true, issuerName: internal-ca, issuerKind: ClusterIssuer}
controller:
  kustos: {tokenSecret: kustos-controller-token, caSecret: kustos-server-tls}
injector:
  enabled: true
  address: "https://kustos-server.kustos.svc:8200"
  tls: {caBundle: ""}
csi:
  enabled: true
"""
HSM = """\
server:
  keyProvider: pkcs11
  pkcs11:
    module: /hsm/lib/libsofthsm2.so
    tokenLabel: kustos
    pinSecret: kustos-hsm-pin
  storage: {size: 5Gi, storageClassName: standard}
  extraVolumes:
    - {name: hsm, hostPath: {path: /opt/hsm, type: Directory}}
  extraVolumeMounts:
    - {name: hsm, mountPath: /hsm, readOnly: true}
"""


def _dry_run(plane: ControlPlane, objects: list[dict[str, Any]]) -> str:
    served = [o for o in objects if o["apiVersion"] != "cert-manager.io/v1"]
    text = "\n---\n".join(yaml.safe_dump(o) for o in served)
    return plane.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=kustos-chart-test",
        "--dry-run=server",
        "-f",
        "-",
        input=text,
    )


def _namespace(plane: ControlPlane) -> str:
    name = f"chart-{uuid.uuid4().hex[:8]}"
    plane.ensure_namespace(name)
    return name


def _kinds(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def test_default_install_is_accepted(control_plane: ControlPlane) -> None:
    namespace = _namespace(control_plane)
    objects = render("kustos", "-n", namespace)
    out = _dry_run(control_plane, objects)
    (controller,) = [o for o in objects if o["kind"] == "Deployment"]
    env = controller["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "KUSTOS_ADDR", "value": f"http://kustos-server.{namespace}.svc:8200"} in env
    for kind, name in _kinds(objects):
        assert f"{name} serverside-applied (server dry run)" in out, (kind, name, out)


def test_production_values_are_accepted(control_plane: ControlPlane, tmp_path: Path) -> None:
    namespace = _namespace(control_plane)
    values = tmp_path / "production.yaml"
    values.write_text(PRODUCTION)
    objects = render("kustos", "-n", namespace, "-f", str(values), "--skip-crds")
    assert not [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    _dry_run(control_plane, objects)
    (server,) = [o for o in objects if o["kind"] == "StatefulSet"]
    pod = server["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "--key-provider=shamir" in container["args"]
    assert not [a for a in container["args"] if a.startswith("--storage")]
    assert {"name": "KUSTOS_STORAGE", "valueFrom": {"secretKeyRef": {"name": "kustos-postgres", "key": "dsn"}}} in container["env"]  # fmt: skip
    assert {"--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key"} <= set(container["args"])
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert "volumeClaimTemplates" not in server["spec"] and server["spec"]["replicas"] == 3
    assert {"name": "tls", "secret": {"secretName": "kustos-server-tls", "defaultMode": 0o440}} in (
        pod["volumes"]
    )
    (service,) = [
        o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "kustos-server"
    ]
    assert service["spec"]["ports"][0]["name"] == "https"  # what `kustos seal` proxies to
    # the controller finds this release's server over https, trusting the Certificate's CA
    (controller,) = [
        o for o in objects if o["kind"] == "Deployment" and "controller" in o["metadata"]["name"]
    ]
    (main,) = controller["spec"]["template"]["spec"]["containers"]
    addr = f"https://kustos-server.{namespace}.svc:8200"
    assert {"name": "KUSTOS_ADDR", "value": addr} in main["env"]
    assert main["args"][-2:] == ["--kustos-ca", "/kustos-ca/ca.crt"]
    assert {"name": "kustos-ca", "mountPath": "/kustos-ca", "readOnly": True} in main[
        "volumeMounts"
    ]
    (certificate,) = [o for o in objects if o["kind"] == "Certificate"]
    assert certificate["spec"]["secretName"] == "kustos-server-tls"
    assert f"kustos-server.{namespace}.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"] == {
        "name": "internal-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


def test_hsm_values_and_a_key_secret_are_accepted(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    namespace = _namespace(control_plane)
    values = tmp_path / "hsm.yaml"
    values.write_text(HSM)
    objects = render(
        "vault", "-n", namespace, "-f", str(values), "--skip-crds",
        "--set", "server.replicas=1", "--set-string", "image.tag=1.0",
    )  # fmt: skip
    _dry_run(control_plane, objects)
    (server,) = [o for o in objects if o["kind"] == "StatefulSet"]
    assert server["metadata"]["name"] == "vault-server"
    (container,) = server["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(":1.0")
    assert {
        "--key-provider=pkcs11",
        "--pkcs11-module=/hsm/lib/libsofthsm2.so",
        "--pkcs11-token-label=kustos",
        "--pkcs11-key-label=kustos-root",
    } <= set(container["args"])
    pin = [e for e in container["env"] if e["name"] == "KUSTOS_PKCS11_PIN"]
    assert pin[0]["valueFrom"]["secretKeyRef"] == {"name": "kustos-hsm-pin", "key": "pin"}
    assert {"name": "hsm", "mountPath": "/hsm", "readOnly": True} in container["volumeMounts"]
    (claim,) = server["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "standard"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"


def test_operator_only_install_has_no_server(control_plane: ControlPlane) -> None:
    namespace = _namespace(control_plane)
    objects = render(
        "kustos", "-n", namespace, "--skip-crds", "--set", "server.enabled=false",
        "--set", "controller.kustos.addr=https://vault.example.internal:8200",
    )  # fmt: skip
    _dry_run(control_plane, objects)
    kinds = {o["kind"] for o in objects}
    assert "StatefulSet" not in kinds and "Service" not in kinds
    (controller,) = [o for o in objects if o["kind"] == "Deployment"]
    env = controller["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "KUSTOS_ADDR", "value": "https://vault.example.internal:8200"} in env


def test_crd_only_install_and_crds_per_group(control_plane: ControlPlane) -> None:
    everything = render("--crds-only")
    assert {o["kind"] for o in everything} == {"CustomResourceDefinition"}
    groups = {o["spec"]["group"] for o in everything}
    assert {"kustos.io", "bitnami.com"} <= groups
    _dry_run(control_plane, everything)
    # where the Bitnami controller runs: every group but bitnami.com
    kept = sorted(groups - {"bitnami.com"})
    some = render("--crds-only", "--crd-groups", ",".join(kept))
    assert {o["spec"]["group"] for o in some} == set(kept)
    # with the templates too, --crd-groups drops only CRDs
    with_templates = render("--crd-groups", "kustos.io")
    crds = [o for o in with_templates if o["kind"] == "CustomResourceDefinition"]
    assert {o["spec"]["group"] for o in crds} == {"kustos.io"}
    assert any(o["kind"] == "Deployment" for o in with_templates)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "server.postgress.dsnSecret=x"), "server.postgress is not a map"),
        (("--set", "server.keyprovider=shamir"), "unknown value"),
        (("--set", "noequals"), "expected key.path=value"),
    ],
)
def test_render_refuses_what_helm_would_silently_ignore(
    args: tuple[str, ...], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy/helm/render.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert result.stdout == ""


def test_the_dry_run_does_refuse_a_bad_value(control_plane: ControlPlane) -> None:
    """The check above can fail: the API server's validation answers through the dry run."""
    namespace = _namespace(control_plane)
    objects = render("kustos", "-n", namespace, "--skip-crds", "--set", "server.replicas=-1")
    with pytest.raises(AssertionError, match=r"spec\.replicas"):
        _dry_run(control_plane, objects)
    objects = render("kustos", "-n", namespace, "--skip-crds", "--set", "server.port=http")
    with pytest.raises(AssertionError, match="containerPort"):
        _dry_run(control_plane, objects)
