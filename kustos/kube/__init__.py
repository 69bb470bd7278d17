"""Kubernetes access for every Kustos role: one connection, one small REST client.

The operator (:mod:`kustos.operator`), the cluster tools (:mod:`kustos.cluster`),
the in-pod agent and its injector all talk to the Kubernetes API the same way:

- :mod:`~kustos.kube.connecting` finds the API server and the credentials the
  way kubectl and controller-runtime do (``--kubeconfig``, ``$KUBECONFIG``,
  the pod's ServiceAccount, ``~/.kube/config``), through
  ``kubernetes_asyncio``'s config loader, so every kubeconfig form works:
  client certificates and keys (data or files), a CA (data or file), bearer
  tokens and token files, exec credential plugins, contexts, and the
  in-cluster token that the kubelet rotates. It yields one
  :class:`~kustos.kube.connecting.Connection` with a token source that
  refreshes itself;
- :mod:`~kustos.kube.resources` names the resources (:class:`Resource`);
- :mod:`~kustos.kube.client` is :class:`KubeClient`, a thin async JSON client
  over :mod:`aiohttp` (kopf's HTTP stack) on that connection (retrying once with a
  fresh token on 401).

kopf (in the operator) logs in with the same :class:`Connection`, so a
process holds one set of credentials. This package sits beside
:mod:`kustos.client` in the import layers and imports nothing from the roles.
"""

from __future__ import annotations

from kustos.kube.client import ConflictError, KubeClient, KubeError, ProxyAnswer
from kustos.kube.connecting import (
    Connection,
    Credentials,
    Login,
    StaticToken,
    context_namespace,
    find_connection,
    load_in_cluster,
    load_kubeconfig,
)
from kustos.kube.resources import (
    CONFIGMAPS,
    DAEMONSETS,
    DEPLOYMENTS,
    EVENTS,
    NAMESPACES,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    STATEFULSETS,
    Body,
    Resource,
)

__all__ = [
    "CONFIGMAPS",
    "DAEMONSETS",
    "DEPLOYMENTS",
    "EVENTS",
    "NAMESPACES",
    "SECRETS",
    "SERVICEACCOUNTS",
    "SERVICES",
    "STATEFULSETS",
    "Body",
    "ConflictError",
    "Connection",
    "Credentials",
    "KubeClient",
    "KubeError",
    "Login",
    "ProxyAnswer",
    "Resource",
    "StaticToken",
    "context_namespace",
    "find_connection",
    "load_in_cluster",
    "load_kubeconfig",
]
