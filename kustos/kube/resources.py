"""The Kubernetes resources Kustos reads and writes, named once.

A :class:`Resource` is a ``group``/``version``/``plural`` (and its kind) and
knows its URL paths; objects travel as plain ``dict`` bodies (:data:`Body`).
The custom resources of each role are declared next to the role (the
operator's in :mod:`kustos.operator.controllers`), the built-in ones here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

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
    "Resource",
]

Body = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """One kind of object in the API: ``group``/``version``/``plural``."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` field of the objects of this resource."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The URL path of a collection, one object or one of its subresources."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


SECRETS: Final = Resource("", "v1", "secrets", "Secret")
CONFIGMAPS: Final = Resource("", "v1", "configmaps", "ConfigMap")
EVENTS: Final = Resource("", "v1", "events", "Event")
NAMESPACES: Final = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
SERVICEACCOUNTS: Final = Resource("", "v1", "serviceaccounts", "ServiceAccount")
SERVICES: Final = Resource("", "v1", "services", "Service")
DEPLOYMENTS: Final = Resource("apps", "v1", "deployments", "Deployment")
STATEFULSETS: Final = Resource("apps", "v1", "statefulsets", "StatefulSet")
DAEMONSETS: Final = Resource("apps", "v1", "daemonsets", "DaemonSet")
