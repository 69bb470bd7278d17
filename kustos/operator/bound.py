"""Bound values in the Secrets the controller writes: opened by logging in as the account they name.

A SealedSecret's or ExternalSecret's data may hold a bound value
(``kustos:bound:v1:<version>:<ns>/<name>:...``, docs/bound.md): a value only a
login as that ServiceAccount opens. :class:`BoundOpener` opens it in place,
just before the Secret is written:

1. the value's account must live in the namespace of the Secret being
   written; a value bound to ``payments/api`` placed in a SealedSecret of
   namespace ``shop`` is refused, so copying a value into another namespace's
   object gets nothing;
2. the controller asks the API server for a short-lived token of that account
   (TokenRequest, audience ``--bound-audience``; the controller's
   ServiceAccount needs ``create`` on ``serviceaccounts/token``);
3. it logs in with it at the server's kubernetes auth (``--bound-role``), and
   the server, which checks the JWT with a TokenReview, opens the value for
   that account only (``sys/bound/decrypt``).

The Kustos token of each account is kept until shortly before it expires.
Errors name the object, the key and the account, never a value.
"""

from __future__ import annotations

import base64
import binascii
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from kustos.client.bound import is_bound
from kustos.crypto.bound import BoundIdentity, parse
from kustos.errors import InvalidRequestError, KustosError, PermissionDeniedError
from kustos.kube import SERVICEACCOUNTS, KubeClient
from kustos.sensitive import Sensitive

__all__ = ["BoundOpener", "contains_bound"]

_TOKEN_SECONDS: Final = 600
_HTTP_TIMEOUT: Final = 30.0


def contains_bound(values: Mapping[str, bytes]) -> bool:
    """Whether any of ``values`` is a bound value."""
    return any(is_bound(v) for v in values.values())


class BoundOpener:
    """Opens bound values for the Secrets of their own namespace (see the module docstring)."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        address: str,
        role: str,
        auth_path: str = "kubernetes",
        audience: str = "kustos",
        ca_path: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_path) if ca_path else True
        )
        self._http = httpx.AsyncClient(
            base_url=address.rstrip("/"), verify=verify, timeout=_HTTP_TIMEOUT
        )
        self._kube = kube
        self._role = role
        self._auth_path = auth_path.strip("/")
        self._audience = audience
        self._clock = clock
        self._tokens: dict[tuple[str, str], tuple[Sensitive[str], float]] = {}
        self.opened = 0
        """Values opened (for tests)."""

    async def close(self) -> None:
        await self._http.aclose()

    async def open(
        self, values: Mapping[str, bytes], *, namespace: str, where: str
    ) -> dict[str, bytes]:
        """``values`` with every bound value opened; ``where`` names the object in errors."""
        opened: dict[str, bytes] = {}
        for key, value in values.items():
            if not is_bound(value):
                opened[key] = value
                continue
            place = f"{where} key {key!r}"
            try:
                text = value.decode("ascii").strip()
                bound = parse(text)
            except (UnicodeDecodeError, InvalidRequestError) as exc:
                raise InvalidRequestError(f"{place}: {exc}") from None
            account = bound.identity
            if account.namespace != namespace:
                raise PermissionDeniedError(
                    f"{place}: the value is bound to service account {account.account}; "
                    f"only a Secret in namespace {account.namespace} may hold it"
                )
            opened[key] = await self._decrypt(text, account, place=place)
            self.opened += 1
        return opened

    async def _decrypt(self, text: str, account: BoundIdentity, *, place: str) -> bytes:
        for attempt in (1, 2):
            token = await self._token(account, place=place)
            response = await self._post(
                "sys/bound/decrypt", {"ciphertext": text}, token=token, place=place
            )
            if response.status_code == 403 and attempt == 1:
                self._tokens.pop((account.namespace, account.name), None)  # revoked? log in again
                continue
            body = _json(response)
            if response.status_code >= 300:
                raise _error(response, body, f"{place}: the server would not open it")
            plaintext = (body.get("data") or {}).get("plaintext")
            try:
                return base64.b64decode(str(plaintext), validate=True)
            except (binascii.Error, ValueError):
                raise KustosError(f"{place}: the server's answer has no plaintext") from None
        raise PermissionDeniedError(f"{place}: the server would not open it")  # pragma: no cover

    async def _token(self, account: BoundIdentity, *, place: str) -> Sensitive[str]:
        key = (account.namespace, account.name)
        cached = self._tokens.get(key)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        jwt = await self._kube.request_token(
            SERVICEACCOUNTS,
            namespace=account.namespace,
            name=account.name,
            audiences=[self._audience],
            seconds=_TOKEN_SECONDS,
        )
        response = await self._post(
            f"auth/{self._auth_path}/login",
            {"role": self._role, "jwt": jwt.reveal()},
            token=None,
            place=place,
        )
        body = _json(response)
        if response.status_code >= 300:
            raise _error(
                response,
                body,
                f"{place}: logging in as service account {account.account} "
                f"(role {self._role}) failed",
            )
        auth = body.get("auth") or {}
        token = Sensitive(str(auth.get("client_token") or ""))
        ttl = float(auth.get("lease_duration") or 0) or float(_TOKEN_SECONDS)
        self._tokens[key] = (token, self._clock() + ttl * 0.8)
        return token

    async def _post(
        self, path: str, body: Mapping[str, Any], *, token: Sensitive[str] | None, place: str
    ) -> httpx.Response:
        headers = {"X-Vault-Token": token.reveal()} if token is not None else {}
        try:
            return await self._http.post(f"/v1/{path}", json=dict(body), headers=headers)
        except httpx.HTTPError as exc:
            raise KustosError(
                f"{place}: the Kustos server is unreachable ({type(exc).__name__})"
            ) from None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(response: httpx.Response, body: Mapping[str, Any], prefix: str) -> KustosError:
    errors = body.get("errors")
    detail = "; ".join(str(e) for e in errors)[:300] if errors else f"HTTP {response.status_code}"
    text = f"{prefix}: {detail}"
    if response.status_code in (401, 403):
        return PermissionDeniedError(text)
    if response.status_code < 500:
        return InvalidRequestError(text)
    return KustosError(text)
