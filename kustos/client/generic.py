"""Vault's generic operations on any path: read, write, list, delete (``vault read/write/list/delete``).

Reach it as ``client.generic``. Useful for paths without a dedicated module
(auth method roles and configs, e.g. ``auth/kubernetes/role/app``). Answers
are returned whole (Vault's envelope: ``data``, ``auth``, ...); ``None``
when the server answers with no body (204) or, for :meth:`read` and
:meth:`list`, when nothing is there (404).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kustos.client._http import Adapter, JSONObject, join_path
from kustos.errors import NotFoundError

__all__ = ["Generic"]


class Generic:
    """``GET``/``POST``/``LIST``/``DELETE`` on ``/v1/<path>``."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter

    def read(self, path: str) -> JSONObject | None:
        """``GET /v1/<path>``; ``None`` if nothing is there."""
        try:
            return self._adapter.request("GET", join_path(path))
        except NotFoundError:
            return None

    def write(self, path: str, data: Mapping[str, Any]) -> JSONObject | None:
        """``POST /v1/<path>`` with ``data`` as the JSON body; the answer, or ``None`` for 204."""
        return self._adapter.request("POST", join_path(path), json=dict(data))

    def list(self, path: str) -> list[str]:
        """``LIST /v1/<path>``: the ``keys`` (empty if nothing is there)."""
        try:
            body = self._adapter.request("LIST", join_path(path))
        except NotFoundError:
            return []
        data = (body or {}).get("data") or {}
        keys = data.get("keys") if isinstance(data, dict) else None
        return [str(k) for k in keys] if isinstance(keys, list) else []

    def read_raw(self, url_path: str) -> bytes:
        """``GET <url_path>``: any path on the server (not only under ``/v1/``), the body unchanged.

        For documents that are not Vault-style JSON, such as a certificate
        served at a URL (``kustos seal --cert https://.../cert.pem``).
        """
        return self._adapter.get_bytes(url_path if url_path.startswith("/") else "/" + url_path)

    def delete(self, path: str) -> None:
        """``DELETE /v1/<path>``."""
        self._adapter.request("DELETE", join_path(path))
