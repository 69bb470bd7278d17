"""``kustos cluster who-can-read-secrets`` on a real API server with RBAC.

The fixture grants Secret access five ways — a RoleBinding to a Role with
``get secrets``, a ClusterRoleBinding to a ClusterRole with ``*`` verbs, a
RoleBinding to an aggregated ClusterRole, a ServiceAccount allowed to create
pods, one allowed to impersonate — and the command must report each with
its route, its direct verbs agreeing with SubjectAccessReview.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube import ControlPlane

RBAC = "rbac.authorization.k8s.io/v1"


def kustos(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "kustos"
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def rbac_fixture(control_plane: ControlPlane) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    ns = f"whocan-{tag}"
    names = {
        "ns": ns,
        "alice": f"alice-{tag}",
        "auditors": f"auditors-{tag}",
        "carol": f"carol-{tag}",
        "star": f"whocan-star-{tag}",
        "parent": f"whocan-agg-{tag}",
        "child": f"whocan-agg-child-{tag}",
        "impersonate": f"whocan-imp-{tag}",
    }
    label = f"kustos.io/aggregate-to-{tag}"
    control_plane.ensure_namespace(ns)
    for sa in ("pod-maker", "impersonator"):
        control_plane.ensure_service_account(ns, sa)
    objects: list[tuple[str, dict[str, Any]]] = [
        ("roles", {"apiVersion": RBAC, "kind": "Role",
                   "metadata": {"name": "secret-reader", "namespace": ns},
                   "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
        ("rolebindings", {"apiVersion": RBAC, "kind": "RoleBinding",
                          "metadata": {"name": "alice-reads", "namespace": ns},
                          "subjects": [{"kind": "User", "name": names["alice"],
                                        "apiGroup": "rbac.authorization.k8s.io"}],
                          "roleRef": {"kind": "Role", "name": "secret-reader",
                                      "apiGroup": "rbac.authorization.k8s.io"}}),
        ("clusterroles", {"apiVersion": RBAC, "kind": "ClusterRole",
                          "metadata": {"name": names["star"]},
                          "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]}),
        ("clusterrolebindings", {"apiVersion": RBAC, "kind": "ClusterRoleBinding",
                                 "metadata": {"name": names["star"]},
                                 "subjects": [{"kind": "Group", "name": names["auditors"],
                                               "apiGroup": "rbac.authorization.k8s.io"}],
                                 "roleRef": {"kind": "ClusterRole", "name": names["star"],
                                             "apiGroup": "rbac.authorization.k8s.io"}}),
        ("clusterroles", {"apiVersion": RBAC, "kind": "ClusterRole",
                          "metadata": {"name": names["child"], "labels": {label: "true"}},
                          "rules": [{"apiGroups": [""], "resources": ["secrets"],
                                     "verbs": ["list", "watch"]}]}),
        ("clusterroles", {"apiVersion": RBAC, "kind": "ClusterRole",
                          "metadata": {"name": names["parent"]},
                          "aggregationRule": {"clusterRoleSelectors": [
                              {"matchLabels": {label: "true"}}]},
                          "rules": []}),
        ("rolebindings", {"apiVersion": RBAC, "kind": "RoleBinding",
                          "metadata": {"name": "carol-aggregated", "namespace": ns},
                          "subjects": [{"kind": "User", "name": names["carol"],
                                        "apiGroup": "rbac.authorization.k8s.io"}],
                          "roleRef": {"kind": "ClusterRole", "name": names["parent"],
                                      "apiGroup": "rbac.authorization.k8s.io"}}),
        ("roles", {"apiVersion": RBAC, "kind": "Role",
                   "metadata": {"name": "pod-maker", "namespace": ns},
                   "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]}),
        ("rolebindings", {"apiVersion": RBAC, "kind": "RoleBinding",
                          "metadata": {"name": "pod-maker", "namespace": ns},
                          "subjects": [{"kind": "ServiceAccount", "name": "pod-maker",
                                        "namespace": ns}],
                          "roleRef": {"kind": "Role", "name": "pod-maker",
                                      "apiGroup": "rbac.authorization.k8s.io"}}),
        ("clusterroles", {"apiVersion": RBAC, "kind": "ClusterRole",
                          "metadata": {"name": names["impersonate"]},
                          "rules": [{"apiGroups": [""], "resources": ["users"],
                                     "verbs": ["impersonate"]}]}),
        ("clusterrolebindings", {"apiVersion": RBAC, "kind": "ClusterRoleBinding",
                                 "metadata": {"name": names["impersonate"]},
                                 "subjects": [{"kind": "ServiceAccount", "name": "impersonator",
                                               "namespace": ns}],
                                 "roleRef": {"kind": "ClusterRole", "name": names["impersonate"],
                                             "apiGroup": "rbac.authorization.k8s.io"}}),
    ]  # fmt: skip
    for plural, body in objects:
        control_plane.create(plural, body)
    # the controller manager fills the aggregated role in; SubjectAccessReview reads that
    deadline = time.monotonic() + 60
    while not (control_plane.get(f"/apis/{RBAC}/clusterroles/{names['parent']}") or {}).get(
        "rules"
    ):
        assert time.monotonic() < deadline, "the aggregated ClusterRole was never filled in"
        time.sleep(0.5)
    try:
        yield names
    finally:
        for plural, body in reversed(objects):
            meta = body["metadata"]
            base = f"/apis/{RBAC}" + (
                f"/namespaces/{meta['namespace']}" if "namespace" in meta else ""
            )
            control_plane.request("DELETE", f"{base}/{plural}/{meta['name']}")


def test_every_route_is_reported_and_agrees_with_subject_access_review(
    control_plane: ControlPlane, rbac_fixture: dict[str, str]
) -> None:
    result = kustos(
        "cluster",
        "who-can-read-secrets",
        "--kubeconfig",
        str(control_plane.kubeconfig),
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    ns = rbac_fixture["ns"]

    def find(subject: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["subject"] == subject]

    (alice,) = find(rbac_fixture["alice"])
    assert (alice["kind"], alice["namespace"], alice["can"], alice["route"]) == (
        "User",
        ns,
        "get",
        "direct",
    )
    assert "RoleBinding" in alice["via"] and "secret-reader" in alice["via"]
    assert alice["review"] == "agrees"

    (auditors,) = find(rbac_fixture["auditors"])
    assert (auditors["kind"], auditors["namespace"], auditors["can"], auditors["route"]) == (
        "Group",
        "*",
        "get,list,watch",
        "wildcard",
    )
    assert auditors["review"] == "agrees"

    (carol,) = find(rbac_fixture["carol"])
    assert (carol["namespace"], carol["can"], carol["route"]) == (ns, "list,watch", "aggregated")
    assert rbac_fixture["child"] in carol["via"] and rbac_fixture["parent"] in carol["via"]
    assert carol["review"] == "agrees"

    (maker,) = find(f"{ns}/pod-maker")
    assert (maker["kind"], maker["namespace"], maker["route"]) == (
        "ServiceAccount",
        ns,
        "create pods",
    )
    (impersonator,) = find(f"{ns}/impersonator")
    assert (impersonator["namespace"], impersonator["route"]) == ("*", "impersonate")

    # every direct finding of the whole cluster was checked, and none disagrees
    assert all(
        r["review"] == "agrees"
        for r in rows
        if r["route"] in ("direct", "wildcard", "aggregated") and r["secrets"] == "*"
    )

    table = kustos("cluster", "who-can-read-secrets", "--kubeconfig", str(control_plane.kubeconfig))
    assert table.returncode == 0 and "subject" in table.stdout
