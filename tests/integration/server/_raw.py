"""Sending requests byte for byte (httpx normalizes ``..`` and ``//`` away; these tests need them)."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit


def raw_request(
    addr: str,
    method: str,
    target: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """Send ``method target`` exactly as given; return (status, parsed JSON body or None)."""
    parts = urlsplit(addr)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        sent = dict(headers or {})
        if token is not None:
            sent["X-Vault-Token"] = token
        connection.request(method, target, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        connection.close()
