"""The HTTP plumbing every API-area module of the client shares.

:class:`Adapter` sends one request with the token header, decodes the JSON
answer and turns any failure into a ``kustos.errors`` exception through the
one table in :mod:`kustos.client.errors`. It never logs request or response
bodies: they may carry secret values.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from kustos.client.errors import ServerUnreachableError, error_from_response
from kustos.errors import InvalidRequestError, KustosError
from kustos.sensitive import Sensitive

__all__ = ["Adapter", "JSONObject", "join_path"]

JSONObject = dict[str, Any]


def join_path(*parts: str) -> str:
    """Join API path parts with ``/``, URL-quoting each segment and refusing ``..``.

    Empty parts are skipped; leading and trailing slashes of each part are
    trimmed, so ``join_path("secret", "data", "/app/db/")`` is ``secret/data/app/db``.
    """
    segments: list[str] = []
    for part in parts:
        for segment in part.strip("/").split("/"):
            if segment == "":
                continue
            if segment in {".", ".."}:
                raise InvalidRequestError(f"invalid path segment {segment!r} in {part!r}")
            segments.append(quote(segment, safe=""))
    return "/".join(segments)


class Adapter:
    """Sends requests to ``<address>/v1/...`` and decodes Vault-style answers."""

    def __init__(
        self,
        address: str,
        token: Sensitive[str] | None,
        *,
        timeout: float,
        verify: bool | ssl.SSLContext,
    ) -> None:
        self.address = address.rstrip("/")
        self._token = token
        self._http = httpx.Client(base_url=self.address, timeout=timeout, verify=verify)

    @property
    def token(self) -> Sensitive[str] | None:
        return self._token

    @token.setter
    def token(self, value: Sensitive[str] | None) -> None:
        self._token = value

    def close(self) -> None:
        self._http.close()

    def get_bytes(self, url_path: str) -> bytes:
        """``GET <url_path>`` (any path on the server, not only under ``/v1/``): the body as it is.

        For answers that are not JSON (``/v1/cert.pem``, a certificate URL);
        a non-200 answer raises through the same status table as :meth:`request`.
        """
        headers = {"X-Vault-Token": self._token.reveal()} if self._token is not None else {}
        response = self._send("GET", url_path, headers=headers)
        if response.status_code != 200:
            raise error_from_response(
                status=response.status_code, body=_decode(response), method="GET", path=url_path
            )
        return response.content

    def _send(
        self,
        method: str,
        url: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str],
    ) -> httpx.Response:
        try:
            return self._http.request(method, url, json=json, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise ServerUnreachableError(
                self.address, f"timed out ({type(exc).__name__})"
            ) from None
        except httpx.ConnectError as exc:
            raise ServerUnreachableError(self.address, _connect_reason(exc)) from None
        except httpx.TransportError as exc:
            raise ServerUnreachableError(self.address, type(exc).__name__) from None

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        ok_statuses: Iterable[int] = (),
    ) -> JSONObject | None:
        """Send ``method /v1/<path>``; return the decoded JSON object, or ``None`` for an empty answer.

        Statuses in ``ok_statuses`` are returned like a 2xx (``sys/health``
        signals its state through them).
        """
        send_headers: dict[str, str] = {"Accept": "application/json"}
        if self._token is not None:
            send_headers["X-Vault-Token"] = self._token.reveal()
        if headers:
            send_headers.update(headers)
        url = "/v1/" + path.lstrip("/")
        response = self._send(method, url, json=json, params=params, headers=send_headers)
        body = _decode(response)
        if response.is_success or response.status_code in set(ok_statuses):
            if body is None:
                return None
            if not isinstance(body, dict):
                raise KustosError(
                    f"{method} {url}: expected a JSON object, got {type(body).__name__}"
                )
            return body
        raise error_from_response(status=response.status_code, body=body, method=method, path=url)


def _decode(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        if response.is_success and response.request.url.path.startswith("/v1/"):
            raise KustosError(
                f"{response.request.method} {response.request.url.path}: the server answered "
                f"HTTP {response.status_code} with a body that is not JSON"
            ) from None
        return None


def _connect_reason(exc: httpx.ConnectError) -> str:
    text = str(exc)
    if "refused" in text.lower() or "Errno 111" in text:
        return "connection refused"
    if "certificate" in text.lower() or "ssl" in text.lower():
        return f"TLS handshake failed ({text})"
    return text or "connection failed"
