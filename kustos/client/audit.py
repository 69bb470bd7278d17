"""Audit devices, ``/v1/sys/audit*``: enable, list and disable devices, and hash a value as they write it.

One method per endpoint, named after hvac's; each docstring names the HTTP
method and path. Reach it as ``client.audit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kustos.client._http import Adapter, JSONObject, join_path
from kustos.errors import KustosError

__all__ = ["Audit"]


class Audit:
    """Endpoints under ``/v1/sys/audit`` and ``/v1/sys/audit-hash``."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter

    def list_enabled_audit_devices(self) -> dict[str, JSONObject]:
        """``GET /v1/sys/audit``: devices by path (``file/``), with type, description and options."""
        body = self._adapter.request("GET", "sys/audit") or {}
        data = body.get("data")
        return (
            {str(k): v for k, v in data.items() if isinstance(v, dict)}
            if isinstance(data, dict)
            else {}
        )

    def enable_audit_device(
        self,
        device_type: str,
        *,
        path: str | None = None,
        description: str = "",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """``PUT /v1/sys/audit/<path>`` (path defaults to the type): ``{"type", "description", "options"}``."""
        payload = {"type": device_type, "description": description, "options": dict(options or {})}
        self._adapter.request("PUT", join_path("sys/audit", path or device_type), json=payload)

    def disable_audit_device(self, path: str) -> None:
        """``DELETE /v1/sys/audit/<path>``."""
        self._adapter.request("DELETE", join_path("sys/audit", path))

    def calculate_hash(self, path: str, input_to_hash: str) -> str:
        """``POST /v1/sys/audit-hash/<path>``: the ``hmac-sha256:...`` that device writes for the value."""
        body = self._adapter.request(
            "POST", join_path("sys/audit-hash", path), json={"input": input_to_hash}
        )
        value = ((body or {}).get("data") or {}).get("hash")
        if not isinstance(value, str):
            raise KustosError(f"audit hash on {path}: the server's answer has no hash")
        return value
