"""A small async Kubernetes REST client: what the Kustos roles read and write.

kopf watches and dispatches events, but it has no public client for creating
Secrets, patching workloads or posting Events; the cluster tools and the
agent need the same few calls. This module is that client: a thin layer over
:mod:`aiohttp` (kopf's own HTTP stack, so a controller process has one)
speaking plain JSON and JSON merge patches (the patch type every API server,
and the kmock emulator of the unit tests, understands), on a
:class:`~kustos.kube.connecting.Connection`. Every request asks the
connection for the current ``Authorization`` header; a 401 makes it renew
the credentials (an expired exec token, a rotated ServiceAccount token) and
the request is sent once more.

Why aiohttp and not httpx: measured on the real API server (TLS, keep-alive,
8 requests in flight), httpx spends 3.7 ms of CPU per request and aiohttp
0.4 ms; a controller syncing 1,000 ExternalSecrets makes 2,000 requests, so
the client's cost was most of the first sync (docs/performance.md).

Objects travel as plain ``dict`` bodies (``Body``); the caller builds them.
Secret bodies are never logged by this module: errors carry the method, the
path and the API server's status message only.

:meth:`KubeClient.proxy_service` sends one request through the API server's
service proxy (``.../services/<scheme>:<name>:<port>/proxy/<path>``), as
kubeseal reaches the Sealed Secrets controller; its answer comes back
whatever its status (:class:`ProxyAnswer` tells the API server's own
refusals, a Kubernetes ``Status``, from the backend's answers).
"""

from __future__ import annotations

import collections
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

import aiohttp
import orjson

from kustos.errors import InvalidRequestError, KustosError, NotFoundError, PermissionDeniedError
from kustos.kube.connecting import Connection
from kustos.kube.resources import EVENTS, SERVICES, Body, Resource
from kustos.sensitive import Sensitive

__all__ = ["ConflictError", "KubeClient", "KubeError", "ProxyAnswer"]

_MERGE_PATCH: Final = "application/merge-patch+json"


class KubeError(KustosError):
    """The Kubernetes API answered with an error the caller did not expect."""


class ConflictError(KubeError):
    """The object already exists (409) or was changed concurrently."""


@dataclass(frozen=True)
class ProxyAnswer:
    """What came back through the service proxy: the backend's answer, or the API server's refusal."""

    status: int
    content: bytes
    content_type: str

    @property
    def api_status(self) -> Body | None:
        """The API server's own ``Status`` object, when it answered instead of the backend.

        The API server refuses with a ``v1 Status`` (no endpoints behind the
        Service: 503 ``ServiceUnavailable``; no such Service: 404; RBAC: 403);
        a backend's answer is passed through as it is.
        """
        if "json" not in self.content_type:
            return None
        try:
            body = orjson.loads(self.content)
        except orjson.JSONDecodeError:
            return None
        if (
            isinstance(body, dict)
            and body.get("kind") == "Status"
            and body.get("apiVersion") == "v1"
        ):
            return body
        return None


class KubeClient:
    """CRUD on Kubernetes objects over one pooled HTTP connection.

    Use as ``async with KubeClient(connection=...) as kube:``; every method
    names the HTTP method and path it maps to. ``headers`` go on every
    request (``Impersonate-User``, say).
    """

    def __init__(self, *, connection: Connection, headers: Mapping[str, str] | None = None) -> None:
        self._connection = connection
        self._server = connection.server.rstrip("/")
        self._headers = {"Accept": "application/json", **(headers or {})}
        self._session: aiohttp.ClientSession | None = None
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
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _pool(self) -> aiohttp.ClientSession:
        # Created on first use, inside the event loop that uses it.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._connection.ssl_context(), limit=64),
                timeout=aiohttp.ClientTimeout(total=self._connection.timeout),
                headers=self._headers,
            )
        return self._session

    async def get(
        self, resource: Resource, *, name: str, namespace: str | None = None
    ) -> Body | None:
        """``GET .../<plural>/<name>``; ``None`` when the object does not exist."""
        try:
            return await self._call("GET", resource.path(namespace=namespace, name=name))
        except NotFoundError:
            return None

    async def get_path(self, path: str) -> Body | None:
        """``GET <path>`` (discovery, say); ``None`` on 404."""
        try:
            return await self._call("GET", path)
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
        return await self._call("PATCH", path, json=patch, content_type=_MERGE_PATCH)

    async def delete(self, resource: Resource, *, name: str, namespace: str | None = None) -> bool:
        """``DELETE .../<plural>/<name>``; ``False`` when it was already gone."""
        try:
            await self._call("DELETE", resource.path(namespace=namespace, name=name))
        except NotFoundError:
            return False
        return True

    async def proxy_service(
        self,
        *,
        namespace: str,
        service: str,
        port: str,
        path: str,
        scheme: str = "http",
        method: str = "GET",
        body: bytes | None = None,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> ProxyAnswer:
        """``<method> /api/v1/namespaces/<ns>/services/<scheme>:<service>:<port>/proxy/<path>``.

        The API server forwards the request to a ready endpoint of the
        Service (``port`` is the Service port's name or number); ``headers``
        go to the backend (the API server keeps ``Authorization`` for
        itself). Raises :class:`KubeError` only when the API server cannot
        be reached; every answer, of any status, is returned.
        """
        target = quote(f"{scheme}:{service}:{port}", safe=":")
        full = (
            SERVICES.path(namespace=namespace, name=target, subresource="proxy")
            + "/"
            + path.lstrip("/")
        )
        status, content, answered_type = await self._exchange(
            method, full, body, content_type, headers or {}
        )
        return ProxyAnswer(status=status, content=content, content_type=answered_type)

    async def request_token(
        self,
        resource: Resource,
        *,
        name: str,
        namespace: str,
        audiences: Sequence[str] = (),
        seconds: int = 600,
    ) -> Sensitive[str]:
        """``POST .../serviceaccounts/<name>/token``: a TokenRequest token for that ServiceAccount."""
        spec: Body = {"expirationSeconds": seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        body = await self._call(
            "POST",
            resource.path(namespace=namespace, name=name, subresource="token"),
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        token = (body.get("status") or {}).get("token")
        if not token:
            raise KubeError(f"TokenRequest for {namespace}/{name} returned no token")
        return Sensitive(str(token))

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
        content_type: str = "application/json",
    ) -> Body:
        payload = orjson.dumps(json) if json is not None else None
        status, content, _ = await self._exchange(method, path, payload, content_type, {})
        if status < 300:
            body = orjson.loads(content) if content else {}
            return body if isinstance(body, dict) else {}
        raise _error(method=method, path=path, status=status, content=content)

    async def _exchange(
        self,
        method: str,
        path: str,
        payload: bytes | None,
        content_type: str,
        extra: Mapping[str, str],
    ) -> tuple[int, bytes, str]:
        """Send one request (again once with renewed credentials after a 401)."""
        session = self._pool()
        sent = await self._connection.authorization()
        while True:
            self.calls[method] += 1
            answer = await self._send(session, method, path, payload, content_type, extra, sent)
            if answer[0] != 401 or self._connection.credentials is None:
                return answer
            await self._connection.refresh(rejected=sent)
            renewed = await self._connection.authorization()
            if renewed is None or renewed == sent:
                return answer
            sent = renewed  # one more try with the renewed credentials

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        payload: bytes | None,
        content_type: str,
        extra: Mapping[str, str],
        authorization: Sensitive[str] | None,
    ) -> tuple[int, bytes, str]:
        headers = dict(extra)
        if payload is not None and content_type:
            headers["Content-Type"] = content_type
        if authorization is not None:
            headers["Authorization"] = authorization.reveal()
        try:
            async with session.request(
                method,
                self._server + path,
                data=payload,
                headers=headers,
                proxy=self._connection.proxy,
            ) as response:
                return response.status, await response.read(), response.content_type
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(
                f"Kubernetes API unreachable at {self._connection.server}: {type(exc).__name__}"
            ) from None


def _error(*, method: str, path: str, status: int, content: bytes) -> KustosError:
    try:
        message = str(orjson.loads(content).get("message", ""))[:300]
    except (ValueError, AttributeError):
        message = ""
    text = f"{method} {path} -> {status}" + (f": {message}" if message else "")
    if status == 404:
        return NotFoundError(text)
    if status == 409:
        return ConflictError(text)
    if status in (401, 403):
        return PermissionDeniedError(text)
    if status in (400, 422):
        return InvalidRequestError(text)
    return KubeError(text)
