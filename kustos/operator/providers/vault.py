"""The ``vault`` provider: the KV secrets engine over Vault's HTTP API (works with Kustos too).

``spec.provider.vault``: ``server`` (URL), ``path`` (the mount, e.g.
``secret``; when absent the first segment of each key is the mount),
``version`` ``v2`` (default) or ``v1``, ``namespace`` (``X-Vault-Namespace``),
``caBundle`` (base64 PEM), ``headers``, and ``auth`` — one of:

- ``tokenSecretRef``: a token kept in a Secret;
- ``appRole``: ``path`` (default ``approle``), ``roleId`` or ``roleRef`` (a
  Secret), ``secretRef`` (the secret id, in a Secret) — logs in at
  ``auth/<path>/login``;
- ``kubernetes``: ``mountPath`` (default ``kubernetes``), ``role``, and the
  ServiceAccount token to log in with: ``serviceAccountRef`` (a fresh token
  from the TokenRequest API, ``audiences`` as given, ten minutes), or
  ``secretRef`` (a token kept in a Secret), or — for a ClusterSecretStore
  only — the controller's own token. A namespaced SecretStore may only name
  ServiceAccounts and Secrets of its own namespace, and never lends it the
  controller's identity.

``auth.namespace`` sends the login to another Vault namespace. A login's
token is used until two thirds of its TTL have passed, or until Vault
answers 403, then the provider logs in again (credentials are read again
too, so a rotated secret id works); :meth:`VaultProvider.close` revokes it.

With KV v2 a whole secret reads as the JSON of its ``data`` map,
``property`` picks one member, ``version`` pins a version,
``metadataPolicy: Fetch`` reads ``custom_metadata`` instead; ``find`` lists
``metadata/`` recursively, filters by name and ``custom_metadata`` tags, and
skips secrets whose current version is soft-deleted or destroyed (the
listing still names them).

Push (PushSecret), as External Secrets does it: a pushed secret is marked
``custom_metadata.managed-by=external-secrets`` and an existing secret
without that mark is never overwritten nor deleted; with a ``property`` the
value becomes one member of the secret (the others kept), without one the
value must be a JSON object and becomes the whole secret; deleting removes
the member (or the whole secret and its metadata).

Reads go through :mod:`aiohttp` (a tenth of httpx's CPU per request, measured
for the Kubernetes client in :mod:`kustos.kube.client`); the ``kustos``
provider's change stream keeps the shared httpx client of :mod:`kustos.client.events`.

Endpoints: ``GET /v1/<mount>/data/<key>[?version=N]``,
``LIST /v1/<mount>/metadata/<path>``, ``GET|POST|DELETE /v1/<mount>/metadata/<key>``,
``POST /v1/<mount>/data/<key>`` (v2); ``GET|POST|DELETE /v1/<mount>/<key>`` (v1);
``POST /v1/auth/<mount>/login``, ``POST /v1/auth/token/revoke-self``.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import httpx
import orjson

from kustos.errors import ConfigError, NotFoundError, PermissionDeniedError
from kustos.kube import SERVICEACCOUNTS
from kustos.operator.providers.base import (
    FindSpec,
    Provider,
    ProviderContext,
    ProviderError,
    PushRef,
    RemoteRef,
    extract_property,
    json_to_map,
    read_secret_key,
)
from kustos.sensitive import Sensitive

__all__ = [
    "MANAGED_BY",
    "VaultEndpoint",
    "VaultLogin",
    "VaultProvider",
    "build_endpoint",
    "create",
]

_LIST_LIMIT = 10_000
MANAGED_BY: Final = ("managed-by", "external-secrets")
"""The ``custom_metadata`` mark of a secret a PushSecret wrote (External Secrets' own mark)."""
_IN_CLUSTER_TOKEN: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True)
class VaultEndpoint:
    """Where a Vault-compatible server is, the headers every request carries, the TLS to use."""

    server: str
    headers: Mapping[str, str] = field(repr=False)
    """``X-Vault-Namespace`` and the store's ``headers`` (the token is the provider's)."""
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


@dataclass(frozen=True)
class VaultLogin:
    """How to get a token: a login path, and a coroutine building its request body."""

    path: str
    """e.g. ``auth/kubernetes/login``."""
    body: Callable[[], Awaitable[dict[str, str]]] = field(repr=False)
    namespace: str | None = None
    """``auth.namespace``: the Vault namespace to log in to, when not the store's."""


class VaultProvider:
    """Reads (and pushes to) a KV mount of one Vault-compatible server."""

    def __init__(
        self,
        *,
        endpoint: VaultEndpoint,
        mount: str,
        kv_version: str,
        token: Sensitive[str] | None = None,
        login: VaultLogin | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._endpoint = endpoint
        self._session: aiohttp.ClientSession | None = None
        self._mount = mount.strip("/")
        self._v2 = kv_version != "v1"
        self._token = token
        self._login = login
        self._clock = clock
        self._renew_at: float | None = None
        self.logins = 0
        """How many times the provider logged in (for tests)."""

    # --- tokens ---------------------------------------------------------------------

    def current_token(self) -> Sensitive[str] | None:
        """The token requests carry now (the change stream asks before each connection)."""
        return self._token

    async def _ensure_token(self) -> None:
        if self._login is None:
            return
        if self._token is None or (self._renew_at is not None and self._clock() >= self._renew_at):
            await self._log_in()

    async def _log_in(self) -> None:
        login = self._login
        if login is None:
            return
        body = await login.body()
        headers = {"X-Vault-Namespace": login.namespace} if login.namespace else None
        answer = await self._send(
            "POST", f"/v1/{login.path}", key=login.path, json=body, headers=headers
        )
        auth = answer.get("auth") or {}
        token = auth.get("client_token")
        if not token:
            raise PermissionDeniedError(f"vault login at {login.path} returned no token")
        self._token = Sensitive(str(token))
        ttl = auth.get("lease_duration") or 0
        self._renew_at = self._clock() + float(ttl) * 2 / 3 if ttl else None
        self.logins += 1

    # --- HTTP -----------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        *,
        key: str,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> dict[str, Any]:
        await self._ensure_token()
        try:
            return await self._send(method, url, key=key, params=params, json=json)
        except PermissionDeniedError:
            if self._login is None:
                raise
            await self._log_in()  # expired or revoked: log in once more, then give up
            return await self._send(method, url, key=key, params=params, json=json)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        key: str,
        params: dict[str, str] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if self._session is None:
            self._session = self._endpoint.session()
        sent = dict(headers or {})
        if self._token is not None and not url.endswith("/login"):
            sent["X-Vault-Token"] = self._token.reveal()
        try:
            async with self._session.request(
                method,
                self._endpoint.server + url,
                params=params,
                data=orjson.dumps(json) if json is not None else None,
                headers=sent,
            ) as response:
                status, content = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(
                f"vault server unreachable for {key!r}: {type(exc).__name__}"
            ) from None
        if status == 404:
            raise NotFoundError(f"vault secret {key!r} does not exist")
        if status in (401, 403):
            raise PermissionDeniedError(f"vault denied access to {key!r}")
        if status >= 300:
            raise ProviderError(f"vault answered {status} for {key!r}")
        try:
            body = orjson.loads(content) if content else {}
        except orjson.JSONDecodeError:
            raise ProviderError(f"vault answered {status} with no JSON for {key!r}") from None
        return body if isinstance(body, dict) else {}

    # --- reading --------------------------------------------------------------------

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

    async def _custom_metadata(self, key: str) -> dict[str, Any]:
        if not self._v2:
            raise ProviderError("metadataPolicy Fetch needs a KV v2 mount")
        mount, path = self._split(key)
        body = await self._request("GET", f"/v1/{mount}/metadata/{path}", key=key)
        return dict((body.get("data") or {}).get("custom_metadata") or {})

    async def _document(self, ref: RemoteRef) -> bytes:
        if ref.metadata_policy == "Fetch":
            data = await self._custom_metadata(ref.key)
        else:
            data = await self._data(ref.key, ref.version)
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    async def get(self, ref: RemoteRef) -> Sensitive[bytes]:
        document = await self._document(ref)
        return Sensitive(
            extract_property(document, ref.property, key=ref.key) if ref.property else document
        )

    async def get_map(self, ref: RemoteRef) -> dict[str, Sensitive[bytes]]:
        document = await self._document(ref)
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
                    custom = await self._custom_metadata(full)
                except NotFoundError:  # gone since it was listed
                    continue
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

    # --- pushing --------------------------------------------------------------------

    async def _current(self, key: str) -> dict[str, Any] | None:
        try:
            return await self._data(key, "")
        except NotFoundError:
            return None

    async def _managed(self, key: str) -> bool:
        if not self._v2:
            return True  # KV v1 keeps the mark in the data itself (checked by the caller)
        try:
            custom = await self._custom_metadata(key)
        except NotFoundError:
            return False
        return custom.get(MANAGED_BY[0]) == MANAGED_BY[1]

    async def push(self, ref: PushRef, value: Sensitive[bytes]) -> None:
        """Write ``value`` at ``ref`` (one ``property`` of it, or the whole secret as a JSON object)."""
        mount, path = self._split(ref.remote_key)
        current = await self._current(ref.remote_key)
        if current is not None and not await self._managed_data(ref.remote_key, current):
            raise ProviderError(
                f"vault secret {ref.remote_key!r} exists and was not written by a PushSecret "
                f"(no custom_metadata {MANAGED_BY[0]}={MANAGED_BY[1]}): not overwritten"
            )
        existing = {k: v for k, v in (current or {}).items() if k != "custom_metadata"}
        if ref.property:
            text = value.reveal().decode("utf-8", "replace")
            if existing.get(ref.property) == text:
                return
            wanted: dict[str, Any] = {**existing, ref.property: text}
        else:
            try:
                parsed = json.loads(value.reveal())
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                raise ProviderError(
                    f"vault push to {ref.remote_key!r} without a property needs a JSON object"
                )
            if parsed == existing:
                return
            wanted = parsed
        if self._v2:
            await self._request(
                "POST",
                f"/v1/{mount}/metadata/{path}",
                key=ref.remote_key,
                json={"custom_metadata": dict([MANAGED_BY])},
            )
            await self._request(
                "POST", f"/v1/{mount}/data/{path}", key=ref.remote_key, json={"data": wanted}
            )
        else:
            await self._request(
                "POST",
                f"/v1/{mount}/{path}",
                key=ref.remote_key,
                json={**wanted, "custom_metadata": dict([MANAGED_BY])},
            )

    async def _managed_data(self, key: str, current: Mapping[str, Any]) -> bool:
        if not self._v2:
            mark = current.get("custom_metadata") or {}
            return isinstance(mark, Mapping) and mark.get(MANAGED_BY[0]) == MANAGED_BY[1]
        return await self._managed(key)

    async def exists(self, ref: PushRef) -> bool:
        """Whether ``ref`` (its ``property``, when given) holds a value (``updatePolicy: IfNotExists``)."""
        current = await self._current(ref.remote_key)
        if current is None:
            return False
        return not ref.property or ref.property in current

    async def delete(self, ref: PushRef) -> None:
        """Remove what a PushSecret pushed at ``ref``; secrets it did not write are left alone."""
        mount, path = self._split(ref.remote_key)
        current = await self._current(ref.remote_key)
        if current is None or not await self._managed_data(ref.remote_key, current):
            return
        if ref.property:
            remaining = {
                k: v for k, v in current.items() if k not in (ref.property, "custom_metadata")
            }
            if remaining:
                if self._v2:
                    body: dict[str, Any] = {"data": remaining}
                    await self._request(
                        "POST", f"/v1/{mount}/data/{path}", key=ref.remote_key, json=body
                    )
                else:
                    body = {**remaining, "custom_metadata": dict([MANAGED_BY])}
                    await self._request(
                        "POST", f"/v1/{mount}/{path}", key=ref.remote_key, json=body
                    )
                return
        if self._v2:
            await self._request("DELETE", f"/v1/{mount}/metadata/{path}", key=ref.remote_key)
        else:
            await self._request("DELETE", f"/v1/{mount}/{path}", key=ref.remote_key)

    # --- lifecycle ------------------------------------------------------------------

    async def validate(self) -> None:
        await self._request("GET", "/v1/auth/token/lookup-self", key="token")

    async def close(self) -> None:
        if self._session is not None:
            if self._login is not None and self._token is not None:
                try:  # a token we logged in for is ours to revoke
                    await self._send("POST", "/v1/auth/token/revoke-self", key="token")
                except (ProviderError, PermissionDeniedError, NotFoundError):
                    pass
            await self._session.close()
            self._session = None


async def build_endpoint(
    context: ProviderContext, *, default_mount: str
) -> tuple[VaultEndpoint, str, str, Sensitive[str] | None, VaultLogin | None]:
    """The server a store's block describes, its mount and KV version, and how to authenticate."""
    config = context.config
    server = str(config.get("server") or "")
    if not server.startswith(("http://", "https://")):
        raise ConfigError(f"{context.name} provider: server must be an http(s) URL, got {server!r}")
    headers: dict[str, str] = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
    if config.get("namespace"):
        headers["X-Vault-Namespace"] = str(config["namespace"])
    verify: ssl.SSLContext | bool = True
    if config.get("caBundle"):
        verify = ssl.create_default_context(cadata=base64.b64decode(config["caBundle"]).decode())
    endpoint = VaultEndpoint(server=server.rstrip("/"), headers=headers, ssl=verify)
    token, login = await _authentication(context)
    mount = str(config.get("path") or default_mount)
    return endpoint, mount, str(config.get("version") or "v2"), token, login


async def _authentication(
    context: ProviderContext,
) -> tuple[Sensitive[str] | None, VaultLogin | None]:
    auth = context.config.get("auth") or {}
    name = context.name
    chosen = [method for method in ("tokenSecretRef", "appRole", "kubernetes") if auth.get(method)]
    others = sorted(
        k
        for k, v in auth.items()
        if v and k not in ("namespace", "tokenSecretRef", "appRole", "kubernetes")
    )
    if others and not chosen:
        raise ConfigError(
            f"{name} provider: auth {', '.join(others)} is not supported "
            "(use tokenSecretRef, appRole or kubernetes)"
        )
    if len(chosen) > 1:
        raise ConfigError(f"{name} provider: give one auth method, not {', '.join(chosen)}")
    if not chosen:
        return None, None
    namespace = str(auth["namespace"]) if auth.get("namespace") else None
    method = chosen[0]
    if method == "tokenSecretRef":
        token = await read_secret_key(context, auth["tokenSecretRef"], what=f"{name} token")
        return token, None
    if method == "appRole":
        return None, _app_role(context, auth["appRole"], namespace)
    return None, _kubernetes(context, auth["kubernetes"], namespace)


def _app_role(
    context: ProviderContext, config: Mapping[str, Any], namespace: str | None
) -> VaultLogin:
    name = context.name
    if not config.get("secretRef"):
        raise ConfigError(f"{name} provider: auth.appRole.secretRef (the secret id) is required")
    if not config.get("roleId") and not config.get("roleRef"):
        raise ConfigError(f"{name} provider: auth.appRole needs roleId or roleRef")

    async def body() -> dict[str, str]:
        if config.get("roleId"):
            role_id = str(config["roleId"])
        else:
            role_id = (
                await read_secret_key(context, config["roleRef"], what=f"{name} appRole roleRef")
            ).reveal()
        secret_id = await read_secret_key(
            context, config["secretRef"], what=f"{name} appRole secretRef"
        )
        return {"role_id": role_id, "secret_id": secret_id.reveal()}

    path = str(config.get("path") or "approle").strip("/")
    return VaultLogin(path=f"auth/{path}/login", body=body, namespace=namespace)


def _kubernetes(
    context: ProviderContext, config: Mapping[str, Any], namespace: str | None
) -> VaultLogin:
    name = context.name
    role = str(config.get("role") or "")
    if not role:
        raise ConfigError(f"{name} provider: auth.kubernetes.role is required")
    account = config.get("serviceAccountRef")
    secret_ref = config.get("secretRef")
    if not account and not secret_ref and not context.cluster_scoped:
        raise ConfigError(
            f"{name} provider: a SecretStore's auth.kubernetes must name serviceAccountRef or "
            "secretRef (only a ClusterSecretStore may log in with the controller's own token)"
        )
    if account:
        if not account.get("name"):
            raise ConfigError(
                f"{name} provider: auth.kubernetes.serviceAccountRef.name is required"
            )
        store_namespace = context.namespace
        account_namespace = str(account.get("namespace") or store_namespace)
        if not context.cluster_scoped and account_namespace != store_namespace:
            raise ConfigError(
                f"{name} provider: a SecretStore may only use ServiceAccounts of its own namespace"
            )

    async def jwt() -> str:
        if account:
            token = await context.kube.request_token(
                SERVICEACCOUNTS,
                name=str(account["name"]),
                namespace=account_namespace,
                audiences=[str(a) for a in account.get("audiences") or []],
                seconds=600,
            )
            return token.reveal()
        if secret_ref:
            selector = {**secret_ref, "key": secret_ref.get("key") or "token"}
            return (
                await read_secret_key(context, selector, what=f"{name} kubernetes secretRef")
            ).reveal()
        header = await context.kube.connection.authorization()
        if header is not None and header.reveal().startswith("Bearer "):
            return header.reveal().removeprefix("Bearer ")
        try:
            return _IN_CLUSTER_TOKEN.read_text().strip()
        except OSError:
            raise ConfigError(
                f"{name} provider: the controller has no ServiceAccount token to log in with"
            ) from None

    async def body() -> dict[str, str]:
        return {"role": role, "jwt": await jwt()}

    path = str(config.get("mountPath") or "kubernetes").strip("/")
    return VaultLogin(path=f"auth/{path}/login", body=body, namespace=namespace)


async def create(context: ProviderContext) -> Provider:
    """Factory registered as ``vault``."""
    endpoint, mount, version, token, login = await build_endpoint(context, default_mount="")
    return VaultProvider(
        endpoint=endpoint, mount=mount, kv_version=version, token=token, login=login
    )
