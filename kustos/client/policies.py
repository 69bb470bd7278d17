"""ACL policies, ``/v1/sys/policies/acl/*``: write, read, list and delete policy documents.

One method per endpoint, named verb_object after hvac; each docstring names the
HTTP method and path. Reach it as ``client.policies``.
"""

from __future__ import annotations

from typing import cast

from kustos.client._http import Adapter, join_path
from kustos.errors import KustosError

__all__ = ["Policies"]


class Policies:
    """Endpoints under ``/v1/sys/policies/acl/``."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter

    def create_or_update_acl_policy(self, name: str, policy: str) -> None:
        """``PUT /v1/sys/policies/acl/<name>`` with ``{"policy": <HCL or JSON text>}``."""
        self._adapter.request("PUT", join_path("sys/policies/acl", name), json={"policy": policy})

    def read_acl_policy(self, name: str) -> str:
        """``GET /v1/sys/policies/acl/<name>``: the document as written."""
        body = self._adapter.request("GET", join_path("sys/policies/acl", name))
        data = (body or {}).get("data")
        if not isinstance(data, dict) or not isinstance(data.get("policy"), str):
            raise KustosError(f"read policy {name}: the server's answer has no policy text")
        return cast(str, data["policy"])

    def list_acl_policies(self) -> list[str]:
        """``LIST /v1/sys/policies/acl``: every policy name (built-ins included)."""
        body = self._adapter.request("LIST", "sys/policies/acl")
        keys = ((body or {}).get("data") or {}).get("keys")
        return [str(k) for k in keys] if isinstance(keys, list) else []

    def delete_acl_policy(self, name: str) -> None:
        """``DELETE /v1/sys/policies/acl/<name>`` (``default`` and ``root`` cannot be deleted)."""
        self._adapter.request("DELETE", join_path("sys/policies/acl", name))
