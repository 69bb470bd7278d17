"""A ``kustos server``'s kubernetes auth pointed at the real control plane, with a real reviewer.

:func:`configure_kubernetes_auth` does what an operator of Kustos does once
per cluster: a reviewer ServiceAccount bound to ``system:auth-delegator``
(TokenReview) and allowed to ``get`` ServiceAccounts (UID look-ups for bound
values), its TokenRequest token as ``token_reviewer_jwt``, the API server's
URL and CA, then the kubernetes auth method enabled at ``auth/kubernetes``.
Logins are then verified by the API server itself (no mocked auth).

:func:`write_role` adds a role; :func:`login` logs a ServiceAccount token in
and returns the Kustos token.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from tests.support.kube import ControlPlane

__all__ = ["AUDIENCE", "configure_kubernetes_auth", "login", "write_role"]

AUDIENCE = "kustos"
"""The audience the roles written here require (a projected token's ``audience``)."""

_REVIEWER_NS = "kustos-system"
_REVIEWER = "kustos-reviewer"


def _call(addr: str, token: str, method: str, path: str, body: object = None) -> httpx.Response:
    response = httpx.request(
        method, f"{addr}/v1/{path}", headers={"X-Vault-Token": token}, json=body, timeout=30
    )
    if response.status_code >= 300:
        raise AssertionError(f"{method} {path} -> {response.status_code}: {response.text}")
    return response


def configure_kubernetes_auth(
    control_plane: ControlPlane, addr: str, root_token: str, *, mount: str = "kubernetes"
) -> None:
    """Enable and configure ``auth/<mount>`` for ``control_plane`` (idempotent per cluster)."""
    control_plane.ensure_service_account(_REVIEWER_NS, _REVIEWER)
    control_plane.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "kustos-reviewer-auth-delegator"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:auth-delegator",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": _REVIEWER, "namespace": _REVIEWER_NS}
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "kustos-reviewer-read-serviceaccounts"},
                "rules": [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "kustos-reviewer-read-serviceaccounts"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "kustos-reviewer-read-serviceaccounts",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": _REVIEWER, "namespace": _REVIEWER_NS}
                ],
            },
        ]
    )
    reviewer_jwt = control_plane.service_account_token(_REVIEWER_NS, _REVIEWER, seconds=86400)
    existing = httpx.get(
        f"{addr}/v1/sys/auth", headers={"X-Vault-Token": root_token}, timeout=30
    ).json()
    if f"{mount}/" not in existing.get("data", existing):
        _call(addr, root_token, "POST", f"sys/auth/{mount}", {"type": "kubernetes"})
    _call(
        addr,
        root_token,
        "POST",
        f"auth/{mount}/config",
        {
            "kubernetes_host": control_plane.url,
            "kubernetes_ca_cert": control_plane.ca_pem.decode(),
            "token_reviewer_jwt": reviewer_jwt,
        },
    )


def write_role(
    addr: str,
    root_token: str,
    name: str,
    *,
    namespaces: Sequence[str],
    service_accounts: Sequence[str],
    policies: Sequence[str] = (),
    ttl: str = "1h",
    max_ttl: str | None = None,
    audience: str = AUDIENCE,
    mount: str = "kubernetes",
) -> None:
    """``auth/<mount>/role/<name>`` bound to the accounts, requiring ``audience``."""
    extra = {"token_max_ttl": max_ttl} if max_ttl else {}
    _call(
        addr,
        root_token,
        "POST",
        f"auth/{mount}/role/{name}",
        {
            "bound_service_account_names": list(service_accounts),
            "bound_service_account_namespaces": list(namespaces),
            "audience": audience,
            "token_policies": list(policies),
            "token_ttl": ttl,
            **extra,
        },
    )


def login(addr: str, role: str, jwt: str, *, mount: str = "kubernetes") -> str:
    """Log ``jwt`` in at ``auth/<mount>/login``; the Kustos token."""
    response = httpx.post(
        f"{addr}/v1/auth/{mount}/login", json={"role": role, "jwt": jwt}, timeout=30
    )
    if response.status_code != 200:
        raise AssertionError(f"login as {role} -> {response.status_code}: {response.text}")
    return str(response.json()["auth"]["client_token"])
