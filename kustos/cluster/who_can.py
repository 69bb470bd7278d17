"""``who-can-read-secrets``: RBAC read from the API server, analysed, and checked by the API server.

Lists ClusterRoles, Roles, ClusterRoleBindings and RoleBindings, runs
:func:`kustos.cluster.rbac.analyse`, then asks the API server itself
(``SubjectAccessReview``) about each subject's direct verbs (``get``,
``list``, ``watch`` on Secrets, in each namespace a finding names, or
cluster-wide): every answer must match the analysis, and a mismatch is
reported on the finding rather than hidden. Indirect routes (creating pods,
exec, impersonation, bind/escalate) have no single review to ask and are
reported as found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from kustos.cluster.rbac import ALL_NAMESPACES, READ_VERBS, Finding, Subject, analyse, direct_verbs
from kustos.kube import KubeClient, Resource

__all__ = ["Report", "who_can_read_secrets"]

_RBAC: Final = "rbac.authorization.k8s.io"
CLUSTER_ROLES: Final = Resource(_RBAC, "v1", "clusterroles", "ClusterRole", namespaced=False)
ROLES: Final = Resource(_RBAC, "v1", "roles", "Role")
CLUSTER_ROLE_BINDINGS: Final = Resource(
    _RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
)
ROLE_BINDINGS: Final = Resource(_RBAC, "v1", "rolebindings", "RoleBinding")
ACCESS_REVIEWS: Final = Resource(
    "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False
)
_PROBE_USER: Final = "kustos:who-can-read-secrets:probe"


@dataclass(frozen=True)
class Report:
    """One finding with what the API server said about its direct verbs."""

    finding: Finding
    review: str
    """``agrees``, ``DISAGREES: ...``, or empty for indirect routes and named Secrets."""

    def row(self) -> dict[str, Any]:
        finding = self.finding
        return {
            "kind": finding.subject.kind,
            "subject": finding.subject.display,
            "namespace": finding.namespace,
            "can": ",".join(finding.verbs) if finding.verbs else finding.route,
            "route": finding.route,
            "secrets": ",".join(finding.names) if finding.names else "*",
            "via": finding.via,
            "review": self.review,
        }


def _system(subject: Subject) -> bool:
    return subject.name.startswith("system:") or (
        subject.kind == "ServiceAccount" and subject.namespace == "kube-system"
    )


async def _allowed(kube: KubeClient, subject: Subject, namespace: str, verb: str) -> bool:
    attributes: dict[str, Any] = {"verb": verb, "resource": "secrets", "version": "v1"}
    if namespace != ALL_NAMESPACES:
        attributes["namespace"] = namespace
    spec: dict[str, Any] = {"resourceAttributes": attributes}
    if subject.kind == "Group":
        spec |= {"user": _PROBE_USER, "groups": [subject.name]}
    else:
        spec["user"] = subject.username
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
    answer = await kube.create(ACCESS_REVIEWS, body=body)
    return bool((answer.get("status") or {}).get("allowed"))


async def who_can_read_secrets(
    kube: KubeClient, *, review: bool = True, include_system: bool = False
) -> list[Report]:
    """Every route to Secrets, each direct one cross-checked with ``SubjectAccessReview``."""
    findings = analyse(
        cluster_roles=await kube.list(CLUSTER_ROLES),
        roles=await kube.list(ROLES),
        cluster_role_bindings=await kube.list(CLUSTER_ROLE_BINDINGS),
        role_bindings=await kube.list(ROLE_BINDINGS),
    )
    if not include_system:
        findings = [f for f in findings if not _system(f.subject)]
    verdicts: dict[tuple[Subject, str], str] = {}
    reports = []
    for finding in findings:
        if not review or not finding.direct or finding.names:
            reports.append(Report(finding, ""))
            continue
        scope = (finding.subject, finding.namespace)
        if scope not in verdicts:
            expected = direct_verbs(findings, finding.subject, finding.namespace)
            wrong = []
            for verb in READ_VERBS:
                allowed = await _allowed(kube, finding.subject, finding.namespace, verb)
                if allowed != (verb in expected):
                    wrong.append(f"{verb}: review={'yes' if allowed else 'no'}")
            verdicts[scope] = "agrees" if not wrong else "DISAGREES: " + "; ".join(wrong)
        reports.append(Report(finding, verdicts[scope]))
    return reports
