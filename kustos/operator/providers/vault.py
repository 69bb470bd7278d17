"""The ``vault`` provider: the KV secrets engine over Vault's HTTP API (works with Kustos too).

``spec.provider.vault``: ``server`` (URL), ``path`` (the mount, e.g.
``secret``; when absent the first segment of each key is the mount),
``version`` ``v2`` (default) or ``v1``, ``namespace`` (``X-Vault-Namespace``),
``caBundle`` (base64 PEM) and ``auth.tokenSecretRef``. With KV v2 a whole
secret reads as the JSON of its ``data`` map, ``property`` picks one member,
``version`` pins a version; ``find`` lists ``metadata/`` recursively,
filters by name and ``custom_metadata`` tags, and skips secrets whose current
version is soft-deleted or destroyed (the listing still names them).

Reads go through :mod:`aiohttp` (a tenth of httpx's CPU per request, measured
for the Kubernetes client in :mod:`kustos.kube.client`); the ``kustos``
provider's change stream keeps the shared httpx client of :mod:`kustos.client.events`.

Endpoints: ``GET /v1/<mount>/data/<key>[?version=N]``,
``LIST /v1/<mount>/metadata/<path>``, ``GET /v1/<mount>/metadata/<key>``
(v2); ``GET /v1/<mount>/<key>`` (v1). The ``kustos`` provider uses the same
code for its reads (:mod:`~kustos.operator.providers.kustos`).
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import orjson

from kustos.errors import ConfigError, NotFoundError, PermissionDeniedError
from kustos.operator.providers.base import (
    FindSpec,
    Provider,
    ProviderContext,
    ProviderError,
    RemoteRef,
    extract_property,
    json_to_map,
    read_secret_key,
)
from kustos.sensitive import Sensitive

__all__ = ["VaultEndpoint", "VaultProvider", "build_endpoint", "create"]

_LIST_LIMIT = 10_000


@dataclass(frozen=True)
class VaultEndpoint:
    """Where a Vault-compatible server is, the headers every request carries, the TLS to use."""

    server: str
    headers: Mapping[str, str] = field(repr=False)
    """``X-Vault-Token`` (secret: never shown) and ``X-Vault-Namespace``."""
    ssl: ssl.SSLContext | bool = True
    timeout: float = 30.0

    def session(self) -> aiohttp.ClientSession:
        """An aiohttp session for this server (create it inside the event loop that uses it)."""
        return aiohttp.ClientSession(
            headers=dict(self.headers),
            connector=aiohttp.TCPConnector(ssl=self.ssl, limit=64),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )

    def httpx_client(self) -> httpx.AsyncClient:
        """An httpx client for this server (the change stream's client is httpx)."""
        return httpx.AsyncClient(
            base_url=self.server, headers=dict(self.headers), verify=self.ssl, timeout=self.timeout
        )


class VaultProvider:
    """Reads a KV mount of one Vault-compatible server."""

    def __init__(self, *, endpoint: VaultEndpoint, mount: str, kv_version: str) -> None:
        self._endpoint = endpoint
        self._session: aiohttp.ClientSession | None = None
        self._mount = mount.strip("/")
        self._v2 = kv_version != "v1"

    def _split(self, key: str) -> tuple[str, str]:
        key = key.strip("/")
        if self._mount:
            return self._mount, key
        mount, _, rest = key.partition("/")
        if not rest:
            raise ConfigError(
                f"vault key {key!r} must start with its mount when the store has no path"
            )
        return mount, rest

    async def _request(
        self, method: str, url: str, *, key: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if self._session is None:
            self._session = self._endpoint.session()
        try:
            async with self._session.request(
                method, self._endpoint.server + url, params=params
            ) as response:
                status, content = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(
                f"vault server unreachable reading {key!r}: {type(exc).__name__}"
            ) from None
        if status == 404:
            raise NotFoundError(f"vault secret {key!r} does not exist")
        if status in (401, 403):
            raise PermissionDeniedError(f"vault denied access to {key!r}")
        if status >= 300:
            raise ProviderError(f"vault answered {status} reading {key!r}")
        try:
            body = orjson.loads(content) if content else {}
        except orjson.JSONDecodeError:
            raise ProviderError(f"vault answered {status} with no JSON reading {key!r}") from None
        return body if isinstance(body, dict) else {}

    async def _data(self, key: str, version: str) -> dict[str, Any]:
        mount, path = self._split(key)
        if not self._v2:
            return dict(
                (await self._request("GET", f"/v1/{mount}/{path}", key=key)).get("data") or {}
            )
        params = {"version": version} if version else None
        body = await self._request("GET", f"/v1/{mount}/data/{path}", key=key, params=params)
        data = (body.get("data") or {}).get("data")
        if data is None:  # deleted or destroyed version
            raise NotFoundError(f"vault secret {key!r} is deleted")
        return dict(data)

    async def get(self, ref: RemoteRef) -> Sensitive[bytes]:
        data = await self._data(ref.key, ref.version)
        document = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        return Sensitive(
            extract_property(document, ref.property, key=ref.key) if ref.property else document
        )

    async def get_map(self, ref: RemoteRef) -> dict[str, Sensitive[bytes]]:
        data = await self._data(ref.key, ref.version)
        document = json.dumps(data, separators=(",", ":")).encode()
        if ref.property:
            document = extract_property(document, ref.property, key=ref.key)
        return json_to_map(document, key=ref.key)

    async def _list(self, mount: str, path: str) -> list[str]:
        try:
            body = await self._request("LIST", f"/v1/{mount}/metadata/{path}", key=path or mount)
        except NotFoundError:
            return []
        return [str(item) for item in (body.get("data") or {}).get("keys") or []]

    async def find(self, spec: FindSpec) -> dict[str, Sensitive[bytes]]:
        if not self._v2:
            raise ProviderError("vault find needs a KV v2 mount")
        mount = self._mount or spec.path.strip("/").partition("/")[0]
        start = spec.path.strip("/") if self._mount else spec.path.strip("/").partition("/")[2]
        pending: list[str] = [f"{start}/" if start else ""]
        names: list[str] = []
        while pending and len(names) < _LIST_LIMIT:
            folder = pending.pop()
            for item in await self._list(mount, folder):
                (pending if item.endswith("/") else names).append(folder + item)
        found: dict[str, Sensitive[bytes]] = {}
        for name in sorted(names):
            full = name if self._mount else f"{mount}/{name}"
            if not FindSpec(name_regexp=spec.name_regexp).matches_name(name):
                continue
            if spec.tags:
                try:
                    meta = await self._request("GET", f"/v1/{mount}/metadata/{name}", key=full)
                except NotFoundError:  # gone since it was listed
                    continue
                custom = (meta.get("data") or {}).get("custom_metadata") or {}
                if any(custom.get(tag) != value for tag, value in spec.tags.items()):
                    continue
            try:
                found[name] = await self.get(RemoteRef(key=full))
            except NotFoundError:
                # The metadata listing still names a secret whose current version
                # is soft-deleted or destroyed (or one deleted since): as in
                # External Secrets, find skips it instead of failing the sync.
                continue
        return found

    async def validate(self) -> None:
        await self._request("GET", "/v1/auth/token/lookup-self", key="token")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def build_endpoint(
    context: ProviderContext, *, default_mount: str
) -> tuple[VaultEndpoint, str, str]:
    """The server (URL, token, namespace, CA) a store's block describes, its mount and KV version."""
    config = context.config
    server = str(config.get("server") or "")
    if not server.startswith(("http://", "https://")):
        raise ConfigError(f"{context.name} provider: server must be an http(s) URL, got {server!r}")
    headers: dict[str, str] = {}
    token_ref = (config.get("auth") or {}).get("tokenSecretRef")
    if token_ref:
        token = await read_secret_key(context, token_ref, what=f"{context.name} token")
        headers["X-Vault-Token"] = token.reveal()
    elif config.get("auth"):
        raise ConfigError(f"{context.name} provider: only auth.tokenSecretRef is supported so far")
    if config.get("namespace"):
        headers["X-Vault-Namespace"] = str(config["namespace"])
    verify: ssl.SSLContext | bool = True
    if config.get("caBundle"):
        verify = ssl.create_default_context(cadata=base64.b64decode(config["caBundle"]).decode())
    endpoint = VaultEndpoint(server=server.rstrip("/"), headers=headers, ssl=verify)
    return endpoint, str(config.get("path") or default_mount), str(config.get("version") or "v2")


async def create(context: ProviderContext) -> Provider:
    """Factory registered as ``vault``."""
    endpoint, mount, version = await build_endpoint(context, default_mount="")
    return VaultProvider(endpoint=endpoint, mount=mount, kv_version=version)
