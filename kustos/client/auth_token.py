"""The token auth method, ``/v1/auth/token/*``: create tokens and look up, renew or revoke one's own.

One method per endpoint, named verb_object; each docstring names the HTTP
method and path. Tokens come back in plain dicts (``client_token``); the
caller decides where they go and never logs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, cast

from kustos.client._http import Adapter, JSONObject
from kustos.errors import KustosError

__all__ = ["AuthToken", "TokenAuth"]


class TokenAuth(TypedDict, total=False):
    """The ``auth`` member of a token create/renew answer."""

    client_token: str
    accessor: str
    policies: list[str]
    token_policies: list[str]
    metadata: dict[str, str] | None
    lease_duration: int
    renewable: bool
    orphan: bool


def _auth(body: JSONObject | None, *, what: str) -> TokenAuth:
    if body is None or not isinstance(body.get("auth"), dict):
        raise KustosError(f"{what}: the server's answer has no 'auth' object")
    return cast(TokenAuth, body["auth"])


def _data(body: JSONObject | None, *, what: str) -> JSONObject:
    if body is None or not isinstance(body.get("data"), dict):
        raise KustosError(f"{what}: the server's answer has no 'data' object")
    return cast(JSONObject, body["data"])


class AuthToken:
    """Endpoints under ``/v1/auth/token/``. Reach it as ``client.auth_token``."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter

    def create(
        self,
        *,
        policies: Sequence[str] | None = None,
        ttl: str | None = None,
        display_name: str | None = None,
        meta: Mapping[str, str] | None = None,
        renewable: bool | None = None,
        no_parent: bool = False,
        no_default_policy: bool = False,
        num_uses: int | None = None,
    ) -> TokenAuth:
        """``POST /v1/auth/token/create``: mint a child token (an orphan with ``no_parent``)."""
        payload: dict[str, Any] = {}
        if policies is not None:
            payload["policies"] = list(policies)
        if ttl is not None:
            payload["ttl"] = ttl
        if display_name is not None:
            payload["display_name"] = display_name
        if meta is not None:
            payload["meta"] = dict(meta)
        if renewable is not None:
            payload["renewable"] = renewable
        if no_parent:
            payload["no_parent"] = True
        if no_default_policy:
            payload["no_default_policy"] = True
        if num_uses is not None:
            payload["num_uses"] = num_uses
        return _auth(
            self._adapter.request("POST", "auth/token/create", json=payload), what="token create"
        )

    def lookup_self(self) -> JSONObject:
        """``GET /v1/auth/token/lookup-self``: the calling token's policies, TTL, metadata."""
        body = self._adapter.request("GET", "auth/token/lookup-self")
        if body is None or not isinstance(body.get("data"), dict):
            raise KustosError("token lookup-self: the server's answer has no 'data' object")
        return cast(JSONObject, body["data"])

    def renew_self(self, *, increment: str | None = None) -> TokenAuth:
        """``POST /v1/auth/token/renew-self``: extend the calling token's TTL."""
        payload = {"increment": increment} if increment is not None else {}
        return _auth(
            self._adapter.request("POST", "auth/token/renew-self", json=payload),
            what="token renew-self",
        )

    def lookup(self, token: str) -> JSONObject:
        """``POST /v1/auth/token/lookup``: another token's properties (needs sudo)."""
        return _data(
            self._adapter.request("POST", "auth/token/lookup", json={"token": token}),
            what="token lookup",
        )

    def lookup_accessor(self, accessor: str) -> JSONObject:
        """``POST /v1/auth/token/lookup-accessor``: a token's properties by accessor (needs sudo)."""
        body = self._adapter.request(
            "POST", "auth/token/lookup-accessor", json={"accessor": accessor}
        )
        return _data(body, what="token lookup-accessor")

    def renew(self, token: str, *, increment: str | None = None) -> TokenAuth:
        """``POST /v1/auth/token/renew``: extend another token's TTL."""
        payload: dict[str, Any] = {"token": token}
        if increment is not None:
            payload["increment"] = increment
        return _auth(
            self._adapter.request("POST", "auth/token/renew", json=payload), what="token renew"
        )

    def renew_accessor(self, accessor: str, *, increment: str | None = None) -> TokenAuth:
        """``POST /v1/auth/token/renew-accessor``: extend a token's TTL by its accessor."""
        payload: dict[str, Any] = {"accessor": accessor}
        if increment is not None:
            payload["increment"] = increment
        return _auth(
            self._adapter.request("POST", "auth/token/renew-accessor", json=payload),
            what="token renew-accessor",
        )

    def revoke(self, token: str) -> None:
        """``POST /v1/auth/token/revoke``: revoke a token and its children."""
        self._adapter.request("POST", "auth/token/revoke", json={"token": token})

    def revoke_accessor(self, accessor: str) -> None:
        """``POST /v1/auth/token/revoke-accessor``: revoke a token (and its children) by accessor."""
        self._adapter.request("POST", "auth/token/revoke-accessor", json={"accessor": accessor})

    def revoke_orphan(self, token: str) -> None:
        """``POST /v1/auth/token/revoke-orphan``: revoke a token; its children become orphans (needs sudo)."""
        self._adapter.request("POST", "auth/token/revoke-orphan", json={"token": token})

    def revoke_self(self) -> None:
        """``POST /v1/auth/token/revoke-self``: revoke the calling token (and its children)."""
        self._adapter.request("POST", "auth/token/revoke-self")
