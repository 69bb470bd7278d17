"""A small async Kubernetes REST client: what the Kustos roles read and write.

kopf watches and dispatches events, but it has no public client for creating
Secrets, patching workloads or posting Events; the cluster tools and the
agent need the same few calls. This module is that client: a thin layer over
:mod:`httpx` speaking plain JSON and JSON merge patches (the patch type every
API server, and the kmock emulator of the unit tests, understands), on a
:class:`~kustos.kube.connecting.Connection`. Every request asks the
connection for the current ``Authorization`` header; a 401 makes it renew
the credentials (an expired exec token, a rotated ServiceAccount token) and
the request is sent once more.

Objects travel as plain ``dict`` bodies (``Body``); the caller builds them.
Secret bodies are never logged by this module: errors carry the method, the
path and the API server's status message only.
"""

from __future__ import annotations

import collections
import datetime
from collections.abc import AsyncGenerator, Mapping
from typing import Final

import httpx

from kustos.errors import InvalidRequestError, KustosError, NotFoundError, PermissionDeniedError
from kustos.kube.connecting import Connection
from kustos.kube.resources import EVENTS, Body, Resource

__all__ = ["ConflictError", "KubeClient", "KubeError"]

_MERGE_PATCH: Final = {"Content-Type": "application/merge-patch+json"}


class KubeError(KustosError):
    """The Kubernetes API answered with an error the caller did not expect."""


class ConflictError(KubeError):
    """The object already exists (409) or was changed concurrently."""


class _ConnectionAuth(httpx.Auth):
    """The connection's current ``Authorization`` header; on 401, renew it and retry once."""

    requires_request_body = True

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        sent = await self._connection.authorization()
        if sent is not None:
            request.headers["Authorization"] = sent.reveal()
        response = yield request
        if response.status_code != 401 or self._connection.credentials is None:
            return
        await self._connection.refresh(rejected=sent)
        renewed = await self._connection.authorization()
        if renewed is None or (sent is not None and renewed == sent):
            return
        request.headers["Authorization"] = renewed.reveal()
        yield request


class KubeClient:
    """CRUD on Kubernetes objects over one pooled HTTP connection.

    Use as ``async with KubeClient(connection=...) as kube:``; every method
    names the HTTP method and path it maps to. ``headers`` go on every
    request (``Impersonate-User``, say).
    """

    def __init__(
        self,
        *,
        connection: Connection,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._connection = connection
        self._http = httpx.AsyncClient(
            base_url=connection.server.rstrip("/"),
            headers={"Accept": "application/json", **(headers or {})},
            verify=connection.ssl_context(),
            auth=_ConnectionAuth(connection) if connection.credentials is not None else None,
            proxy=connection.proxy,
            timeout=connection.timeout,
            transport=transport,
        )
        self.calls: collections.Counter[str] = collections.Counter()
        """Requests sent, by HTTP method (for tests and the benchmark)."""

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
        self.calls[method] += 1
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
