"""A small async Kubernetes REST client for what the controllers write.

kopf watches and dispatches events, but it has no public client for creating
Secrets, patching workloads or posting Events. This module is that client: a
thin layer over :mod:`httpx` speaking plain JSON and JSON merge patches (the
patch type every API server, and the kmock emulator used in the tests,
understands). It uses the same :class:`Connection` kopf logs in with, so the
operator holds one set of credentials.

Objects travel as plain ``dict`` bodies (``Body``); the caller builds them.
Secret bodies are never logged by this module: errors carry the method, the
path and the API server's status message only.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from kustos.errors import InvalidRequestError, KustosError, NotFoundError, PermissionDeniedError
from kustos.sensitive import Sensitive

__all__ = [
    "CONFIGMAPS",
    "DAEMONSETS",
    "DEPLOYMENTS",
    "EVENTS",
    "SECRETS",
    "STATEFULSETS",
    "Body",
    "ConflictError",
    "Connection",
    "KubeClient",
    "KubeError",
    "Resource",
]

Body = dict[str, Any]

_MERGE_PATCH: Final = {"Content-Type": "application/merge-patch+json"}


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
DEPLOYMENTS: Final = Resource("apps", "v1", "deployments", "Deployment")
STATEFULSETS: Final = Resource("apps", "v1", "statefulsets", "StatefulSet")
DAEMONSETS: Final = Resource("apps", "v1", "daemonsets", "DaemonSet")


class KubeError(KustosError):
    """The Kubernetes API answered with an error the caller did not expect."""


class ConflictError(KubeError):
    """The object already exists (409) or was changed concurrently."""


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate; built from kopf's login."""

    server: str
    token: Sensitive[str] | None = None
    ca_path: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    certificate_path: str | None = None
    private_key_path: str | None = None
    default_namespace: str | None = None
    timeout: float = 30.0
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    def verify(self) -> ssl.SSLContext | bool:
        """The TLS verification setting for httpx."""
        if self.insecure:
            return False
        if self.ca_path or self.ca_data:
            context = ssl.create_default_context(
                cafile=self.ca_path, cadata=self.ca_data.decode() if self.ca_data else None
            )
            if self.certificate_path:
                context.load_cert_chain(self.certificate_path, self.private_key_path)
            return context
        return True


class KubeClient:
    """CRUD on Kubernetes objects over one pooled HTTP connection.

    Use as ``async with KubeClient(connection=...) as kube:``; every method
    names the HTTP method and path it maps to.
    """

    def __init__(
        self, *, connection: Connection, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        headers = {"Accept": "application/json", **connection.extra_headers}
        if connection.token is not None:
            headers["Authorization"] = f"Bearer {connection.token.reveal()}"
        self._connection = connection
        self._http = httpx.AsyncClient(
            base_url=connection.server.rstrip("/"),
            headers=headers,
            verify=connection.verify(),
            timeout=connection.timeout,
            transport=transport,
        )

    @property
    def connection(self) -> Connection:
        """Where this client connects, and as whom."""
        return self._connection

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def get(
        self, resource: Resource, *, name: str, namespace: str | None = None
    ) -> Body | None:
        """``GET .../<plural>/<name>``; ``None`` when the object does not exist."""
        try:
            return await self._call("GET", resource.path(namespace=namespace, name=name))
        except NotFoundError:
            return None

    async def list(self, resource: Resource, *, namespace: str | None = None) -> list[Body]:
        """``GET .../<plural>``: every object (in one namespace, or everywhere)."""
        body = await self._call("GET", resource.path(namespace=namespace))
        items = body.get("items") or []
        for item in items:  # list items omit apiVersion/kind on a real API server
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
        return list(items)

    async def create(self, resource: Resource, *, body: Body, namespace: str | None = None) -> Body:
        """``POST .../<plural>``; raises :class:`ConflictError` if it already exists."""
        return await self._call("POST", resource.path(namespace=namespace), json=body)

    async def patch(
        self,
        resource: Resource,
        *,
        name: str,
        patch: Body,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Body:
        """``PATCH .../<plural>/<name>[/<subresource>]`` as a JSON merge patch (``None`` deletes a key)."""
        path = resource.path(namespace=namespace, name=name, subresource=subresource)
        return await self._call("PATCH", path, json=patch, headers=_MERGE_PATCH)

    async def delete(self, resource: Resource, *, name: str, namespace: str | None = None) -> bool:
        """``DELETE .../<plural>/<name>``; ``False`` when it was already gone."""
        try:
            await self._call("DELETE", resource.path(namespace=namespace, name=name))
        except NotFoundError:
            return False
        return True

    async def post_event(
        self,
        *,
        involved: Body,
        type_: str,
        reason: str,
        message: str,
        component: str = "kustos-operator",
        now: datetime.datetime | None = None,
    ) -> None:
        """``POST /api/v1/namespaces/<ns>/events``: a core/v1 Event about ``involved``.

        ``message`` must be built from names only; it is shown by ``kubectl describe``.
        """
        meta = involved.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        stamp = (now or datetime.datetime.now(tz=datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        suffix = f"{datetime.datetime.now(tz=datetime.UTC).timestamp():.6f}".replace(".", "")
        event: Body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name', 'object')}.{suffix}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        await self.create(EVENTS, body=event, namespace=namespace)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Body | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Body:
        try:
            response = await self._http.request(method, path, json=json, headers=headers)
        except httpx.HTTPError as exc:
            raise KubeError(
                f"Kubernetes API unreachable at {self._connection.server}: {type(exc).__name__}"
            ) from None
        if response.status_code < 300:
            body = response.json() if response.content else {}
            return body if isinstance(body, dict) else {}
        raise _error(method=method, path=path, response=response)


def _error(*, method: str, path: str, response: httpx.Response) -> KustosError:
    try:
        message = str(response.json().get("message", ""))[:300]
    except ValueError:
        message = ""
    text = f"{method} {path} -> {response.status_code}" + (f": {message}" if message else "")
    if response.status_code == 404:
        return NotFoundError(text)
    if response.status_code == 409:
        return ConflictError(text)
    if response.status_code in (401, 403):
        return PermissionDeniedError(text)
    if response.status_code in (400, 422):
        return InvalidRequestError(text)
    return KubeError(text)
