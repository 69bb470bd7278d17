"""Leases of dynamic secrets (``sys/leases/*``): look up, list, renew, revoke, tidy.

Reach it as ``client.leases``. One method per endpoint, named verb_object;
each docstring names the HTTP method and path under ``/v1/``. Shapes are
Vault's (hvac's ``client.sys.read_lease`` & co. call the same paths).
"""

from __future__ import annotations

from typing import Any

from kustos.client._http import Adapter, JSONObject, join_path
from kustos.errors import NotFoundError

__all__ = ["Leases"]


class Leases:
    """``sys/leases/*``."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter

    def read_lease(self, lease_id: str) -> JSONObject:
        """``PUT sys/leases/lookup``: ``id``, ``issue_time``, ``expire_time``, ``ttl``, ``renewable``."""
        body = self._adapter.request("PUT", "sys/leases/lookup", json={"lease_id": lease_id})
        data = (body or {}).get("data")
        return dict(data) if isinstance(data, dict) else {}

    def list_leases(self, prefix: str) -> list[str]:
        """``LIST sys/leases/lookup/<prefix>``: the next segments of the lease ids under it."""
        try:
            body = self._adapter.request("LIST", join_path("sys/leases/lookup", prefix))
        except NotFoundError:
            return []
        keys = ((body or {}).get("data") or {}).get("keys")
        return [str(k) for k in keys] if isinstance(keys, list) else []

    def renew_lease(self, lease_id: str, *, increment: str | int | None = None) -> JSONObject:
        """``PUT sys/leases/renew``: the envelope with the new ``lease_duration``."""
        payload: dict[str, Any] = {"lease_id": lease_id}
        if increment is not None:
            payload["increment"] = increment
        return self._adapter.request("PUT", "sys/leases/renew", json=payload) or {}

    def revoke_lease(self, lease_id: str) -> None:
        """``PUT sys/leases/revoke``."""
        self._adapter.request("PUT", "sys/leases/revoke", json={"lease_id": lease_id})

    def revoke_prefix(self, prefix: str, *, force: bool = False) -> None:
        """``PUT sys/leases/revoke-prefix/<prefix>`` (``revoke-force`` with ``force``)."""
        action = "revoke-force" if force else "revoke-prefix"
        self._adapter.request("PUT", join_path("sys/leases", action, prefix))

    def tidy(self) -> JSONObject:
        """``PUT sys/leases/tidy``: what was cleaned up."""
        body = self._adapter.request("PUT", "sys/leases/tidy")
        data = (body or {}).get("data")
        return dict(data) if isinstance(data, dict) else {}
