"""The RBAC analysis behind ``who-can-read-secrets``: every route, scope and aggregation, no cluster."""

from __future__ import annotations

from typing import Any

from kustos.cluster.rbac import ALL_NAMESPACES, Subject, aggregate, analyse, direct_verbs


def role(name: str, rules: list[dict[str, Any]], namespace: str = "app") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "rules": rules}


def cluster_role(
    name: str, rules: list[dict[str, Any]], labels: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "rules": rules, **extra}


def binding(
    name: str, kind: str, ref: str, subjects: list[dict[str, str]], namespace: str | None = None
) -> dict[str, Any]:
    meta = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {"metadata": meta, "roleRef": {"kind": kind, "name": ref}, "subjects": subjects}


def rule(groups: list[str], resources: list[str], verbs: list[str], **extra: Any) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs, **extra}


USER = {"kind": "User", "name": "u"}


def routes(**objects: Any) -> set[tuple[str, str, str, str]]:
    found = analyse(
        cluster_roles=objects.get("cluster_roles", []),
        roles=objects.get("roles", []),
        cluster_role_bindings=objects.get("crbs", []),
        role_bindings=objects.get("rbs", []),
    )
    return {(f.subject.display, f.namespace, ",".join(f.verbs), f.route) for f in found}


def test_direct_wildcard_and_scopes() -> None:
    assert routes(
        roles=[role("r", [rule([""], ["secrets"], ["get", "delete"])])],
        rbs=[binding("b", "Role", "r", [USER], "app")],
    ) == {("u", "app", "get", "direct")}
    assert routes(
        cluster_roles=[cluster_role("c", [rule(["*"], ["*"], ["*"])])],
        crbs=[binding("b", "ClusterRole", "c", [{"kind": "Group", "name": "g"}])],
    ) >= {("g", ALL_NAMESPACES, "get,list,watch", "wildcard")}
    # a RoleBinding to a ClusterRole grants only in its namespace
    assert routes(
        cluster_roles=[cluster_role("c", [rule([""], ["secrets"], ["list"])])],
        rbs=[binding("b", "ClusterRole", "c", [USER], "team")],
    ) == {("u", "team", "list", "direct")}
    # other groups' "secrets" are not core Secrets; a Role in another namespace is not found
    assert (
        routes(
            roles=[role("r", [rule(["example.com"], ["secrets"], ["get"])])],
            rbs=[
                binding("b", "Role", "r", [USER], "app"),
                binding("x", "Role", "nope", [USER], "app"),
            ],
        )
        == set()
    )


def test_indirect_routes() -> None:
    found = routes(
        roles=[
            role("p", [rule([""], ["pods"], ["create"])]),
            role("e", [rule([""], ["pods/exec"], ["create"])]),
            role("w", [rule(["apps"], ["deployments"], ["create", "update"])]),
        ],
        cluster_roles=[
            cluster_role("i", [rule([""], ["serviceaccounts"], ["impersonate"])]),
            cluster_role(
                "b", [rule(["rbac.authorization.k8s.io"], ["clusterroles"], ["bind", "escalate"])]
            ),
        ],
        rbs=[
            binding("p", "Role", "p", [{"kind": "ServiceAccount", "name": "sa"}], "app"),
            binding("e", "Role", "e", [USER], "app"),
            binding("w", "Role", "w", [USER], "app"),
        ],
        crbs=[binding("i", "ClusterRole", "i", [USER]), binding("b", "ClusterRole", "b", [USER])],
    )
    assert found == {
        ("app/sa", "app", "", "create pods"),
        ("u", "app", "", "pods/exec"),
        ("u", "app", "", "create workloads"),
        ("u", ALL_NAMESPACES, "", "impersonate"),
        ("u", ALL_NAMESPACES, "", "bind"),
        ("u", ALL_NAMESPACES, "", "escalate"),
    }


def test_aggregation_from_selectors() -> None:
    child = cluster_role("child", [rule([""], ["secrets"], ["watch"])], {"agg": "yes"})
    other = cluster_role("other", [rule([""], ["secrets"], ["get"])], {"agg": "no"})
    parent = cluster_role(
        "parent",
        [],
        aggregationRule={
            "clusterRoleSelectors": [
                {"matchExpressions": [{"key": "agg", "operator": "In", "values": ["yes"]}]}
            ]
        },
    )
    rules = aggregate([child, other, parent])
    assert [source for _, source in rules["parent"]] == ["child"]
    findings = analyse(
        cluster_roles=[child, other, parent],
        roles=[],
        cluster_role_bindings=[],
        role_bindings=[binding("b", "ClusterRole", "parent", [USER], "app")],
    )
    (finding,) = findings
    assert (finding.verbs, finding.route) == (("watch",), "aggregated")
    assert "aggregates ClusterRole child" in finding.via
    assert direct_verbs(findings, Subject("User", "u"), "app") == {"watch"}
    assert direct_verbs(findings, Subject("User", "u"), "elsewhere") == set()


def test_resource_names_are_kept() -> None:
    findings = analyse(
        cluster_roles=[],
        roles=[role("r", [rule([""], ["secrets"], ["get"], resourceNames=["db"])])],
        cluster_role_bindings=[],
        role_bindings=[binding("b", "Role", "r", [USER], "app")],
    )
    assert [f.names for f in findings] == [("db",)]
    assert direct_verbs(findings, Subject("User", "u"), "app") == set()
