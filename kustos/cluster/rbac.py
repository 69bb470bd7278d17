"""Who can read Secrets: RBAC rules and bindings analysed, pure functions, no I/O.

:func:`analyse` takes the cluster's ClusterRoles, Roles, ClusterRoleBindings
and RoleBindings (as the API returns them) and finds, for each subject (user,
group or ServiceAccount), every way it can read Secrets and where:

- ``direct``: a rule allowing ``get``, ``list`` or ``watch`` on ``secrets``
  (``wildcard`` when that comes from ``*`` in verbs, resources or API groups;
  ``aggregated`` when the rule sits in a ClusterRole that an aggregated
  ClusterRole pulls in through its ``aggregationRule``);
- the indirect routes, which do not show in a ``get secrets`` check but lead
  to the same data: ``create pods`` (a pod may mount or print any Secret of
  its namespace; likewise creating Deployments, Jobs and other workloads),
  ``pods/exec`` (a shell in a pod that mounts Secrets), ``impersonate``
  (act as someone who can read them), ``bind`` and ``escalate`` on roles
  (grant yourself the right).

A RoleBinding scopes what it grants to its namespace, even for a ClusterRole;
a ClusterRoleBinding grants in every namespace (``*``). Aggregation is
computed here from the selectors, so the answer does not depend on the
controller manager having filled the aggregated rules in yet.

The I/O around it (listing the objects, cross-checking the direct verbs with
``SubjectAccessReview``) lives in :mod:`kustos.cluster.who_can`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "ALL_NAMESPACES",
    "READ_VERBS",
    "Finding",
    "Subject",
    "aggregate",
    "analyse",
]

ALL_NAMESPACES: Final = "*"
READ_VERBS: Final = ("get", "list", "watch")
_CORE: Final = ("", "*")
_WORKLOADS: Final = {
    ("", "replicationcontrollers"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
}
_RBAC_GROUP: Final = "rbac.authorization.k8s.io"

Body = Mapping[str, Any]


@dataclass(frozen=True, order=True)
class Subject:
    """A user, a group or a ServiceAccount (``namespace`` set) named in a binding."""

    kind: str
    name: str
    namespace: str = ""

    @property
    def display(self) -> str:
        return f"{self.namespace}/{self.name}" if self.kind == "ServiceAccount" else self.name

    @property
    def username(self) -> str:
        """The user name the API server sees for this subject (ServiceAccounts have one)."""
        if self.kind == "ServiceAccount":
            return f"system:serviceaccount:{self.namespace}:{self.name}"
        return self.name


@dataclass(frozen=True)
class Finding:
    """One way ``subject`` can read Secrets in ``namespace`` (``*``: every namespace).

    ``verbs`` are the read verbs granted directly (empty for an indirect
    route); ``route`` is ``direct``, ``wildcard``, ``aggregated``,
    ``create pods``, ``create workloads``, ``pods/exec``, ``impersonate``,
    ``bind`` or ``escalate``; ``via`` names the binding and the role;
    ``names`` limits the grant to those Secrets (``resourceNames``).
    """

    subject: Subject
    namespace: str
    verbs: tuple[str, ...]
    route: str
    via: str
    names: tuple[str, ...] = ()

    @property
    def direct(self) -> bool:
        return bool(self.verbs)


def _labels_match(labels: Mapping[str, str], selector: Body) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = set(expression.get("values") or [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def aggregate(cluster_roles: Sequence[Body]) -> dict[str, list[tuple[Body, str]]]:
    """Each ClusterRole's rules with where they come from (itself, or the role it aggregates)."""
    by_name = {str(role["metadata"]["name"]): role for role in cluster_roles}
    rules: dict[str, list[tuple[Body, str]]] = {}
    for name, role in by_name.items():
        own = [(rule, "") for rule in role.get("rules") or []]
        selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
        if not selectors:
            rules[name] = own
            continue
        pulled: list[tuple[Body, str]] = []
        for other_name, other in by_name.items():
            if other_name == name or (other.get("aggregationRule") or {}).get(
                "clusterRoleSelectors"
            ):
                continue
            labels = other["metadata"].get("labels") or {}
            if any(_labels_match(labels, selector) for selector in selectors):
                pulled += [(rule, other_name) for rule in other.get("rules") or []]
        # the controller manager copies the pulled rules into the role: keep one copy of each
        pulled_rules = [rule for rule, _ in pulled]
        rules[name] = pulled + [(rule, "") for rule, _ in own if rule not in pulled_rules]
    return rules


def _has(values: Iterable[str], wanted: str) -> bool:
    values = list(values)
    return wanted in values or "*" in values


def _routes(rule: Body) -> Iterator[tuple[tuple[str, ...], str, tuple[str, ...]]]:
    """(read verbs, route, resource names) for every way this one rule reaches Secrets."""
    groups = list(rule.get("apiGroups") or [])
    resources = list(rule.get("resources") or [])
    verbs = list(rule.get("verbs") or [])
    names = tuple(rule.get("resourceNames") or ())
    if any(g in _CORE for g in groups) and _has(resources, "secrets"):
        granted = tuple(v for v in READ_VERBS if _has(verbs, v))
        if granted:
            wild = "*" in verbs or "*" in resources or "*" in groups
            yield granted, "wildcard" if wild else "direct", names
    if any(g in _CORE for g in groups) and _has(verbs, "create") and not names:
        if _has(resources, "pods"):
            yield (), "create pods", ()
        if "pods/exec" in resources or "*" in resources or "pods/*" in resources:
            yield (), "pods/exec", ()
    if _has(verbs, "create") and not names:
        for group, plural in _WORKLOADS:
            if (group in groups or "*" in groups) and _has(resources, plural):
                yield (), "create workloads", ()
                break
    if _has(verbs, "impersonate") and any(
        _has(resources, r) for r in ("users", "groups", "serviceaccounts")
    ):
        yield (), "impersonate", names
    if _RBAC_GROUP in groups or "*" in groups:
        for verb in ("bind", "escalate"):
            if _has(verbs, verb) and any(_has(resources, r) for r in ("roles", "clusterroles")):
                yield (), verb, names


def _subjects(binding: Body) -> list[Subject]:
    found = []
    for subject in binding.get("subjects") or []:
        kind = str(subject.get("kind", ""))
        if kind == "ServiceAccount":
            namespace = subject.get("namespace") or binding["metadata"].get("namespace", "")
            found.append(Subject(kind, str(subject.get("name", "")), str(namespace)))
        elif kind in ("User", "Group"):
            found.append(Subject(kind, str(subject.get("name", ""))))
    return found


def analyse(
    *,
    cluster_roles: Sequence[Body],
    roles: Sequence[Body],
    cluster_role_bindings: Sequence[Body],
    role_bindings: Sequence[Body],
) -> list[Finding]:
    """Every route to Secrets, one :class:`Finding` per subject, scope, rule route and binding."""
    cluster_rules = aggregate(cluster_roles)
    role_rules = {
        (str(r["metadata"].get("namespace", "")), str(r["metadata"]["name"])): r.get("rules") or []
        for r in roles
    }
    findings: list[Finding] = []
    bindings = [(b, ALL_NAMESPACES, "ClusterRoleBinding") for b in cluster_role_bindings] + [
        (b, str(b["metadata"].get("namespace", "")), "RoleBinding") for b in role_bindings
    ]
    for binding, scope, binding_kind in bindings:
        ref = binding.get("roleRef") or {}
        ref_kind, ref_name = str(ref.get("kind", "")), str(ref.get("name", ""))
        if ref_kind == "ClusterRole":
            rules = cluster_rules.get(ref_name, [])
            role_text = f"ClusterRole {ref_name}"
        elif ref_kind == "Role" and binding_kind == "RoleBinding":
            rules = [(rule, "") for rule in role_rules.get((scope, ref_name), [])]
            role_text = f"Role {scope}/{ref_name}"
        else:
            continue
        where = binding["metadata"]["name"]
        if binding_kind == "RoleBinding":
            where = f"{scope}/{where}"
        seen: set[tuple[tuple[str, ...], str, tuple[str, ...], str]] = set()
        for rule, source in rules:
            for verbs, route, names in _routes(rule):
                if source and verbs:
                    route = "aggregated"
                key = (verbs, route, names, source)
                if key in seen:
                    continue
                seen.add(key)
                via = f"{binding_kind} {where} -> {role_text}"
                if source:
                    via += f" (aggregates ClusterRole {source})"
                for subject in _subjects(binding):
                    findings.append(Finding(subject, scope, verbs, route, via, names))
    return sorted(findings, key=lambda f: (f.subject, f.namespace, f.route, f.via))


def direct_verbs(findings: Iterable[Finding], subject: Subject, namespace: str) -> set[str]:
    """The read verbs ``subject`` has on every Secret of ``namespace`` by the findings."""
    verbs: set[str] = set()
    for finding in findings:
        if finding.subject != subject or finding.names:
            continue
        if finding.namespace in (namespace, ALL_NAMESPACES):
            verbs.update(finding.verbs)
    return verbs
