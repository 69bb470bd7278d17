"""Calls from the console into the server's own API, in process, as the signed-in user.

The console has no second implementation of anything: every read and write
it shows goes through :class:`InternalApi`, which hands a request for
``/v1/<path>`` to the same dispatcher a Vault client reaches over HTTP
(:meth:`kustos.server.app.KustosApp` ``/v1/`` endpoint). So the token is
looked up, the policy decides, parameters are checked and the call is
audited exactly as for any client: a value revealed in the browser is an
audited read under the caller's policy, and a write the policy refuses is
refused here too. The ASGI scope of the browser's request lends the
internal call its client address (the audit entry names the browser's
address, not loopback) and its scheme.

The answer is the dispatcher's JSON envelope, decoded; nothing here logs
a request or response body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode

import orjson
from starlette.types import Message, Receive, Scope, Send

from kustos.sensitive import Sensitive

__all__ = ["ApiAnswer", "InternalApi", "Serve"]

Serve = Callable[[Scope, str, Receive, Send], Awaitable[None]]
"""The dispatcher's entry point: ``(scope, path after /v1/, receive, send)``."""

_JSON: Final = "application/json"


@dataclass(frozen=True)
class ApiAnswer:
    """One decoded answer of the API: status, the JSON document (``{}`` when empty) and raw bytes."""

    status: int
    document: dict[str, Any] = field(repr=False)
    body: bytes = field(repr=False)
    content_type: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def data(self) -> dict[str, Any]:
        """The envelope's ``data`` object (``{}`` when absent or not an object)."""
        data = self.document.get("data")
        return data if isinstance(data, dict) else {}

    @property
    def error(self) -> str:
        """The API's error messages joined (they never hold values), or a generic one."""
        errors = self.document.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e) for e in errors if e) or _STATUS_TEXT.get(self.status, "error")
        return _STATUS_TEXT.get(self.status, f"the server answered {self.status}")


_STATUS_TEXT: Final = {
    400: "the request was refused",
    403: "permission denied",
    404: "not found",
    405: "not allowed here",
    413: "too large",
    503: "the server is sealed or cannot record the audit entry",
}


class InternalApi:
    """Sends requests to the API dispatcher in process, with the caller's token and client address."""

    def __init__(self, serve: Serve) -> None:
        self._serve = serve

    async def call(
        self,
        origin: Scope,
        method: str,
        path: str,
        *,
        token: Sensitive[str] | None,
        query: Mapping[str, str] | None = None,
        json: Any = None,
        reason: str | None = None,
        content_type: str = _JSON,
    ) -> ApiAnswer:
        """``method /v1/<path>`` as the holder of ``token``; ``origin`` is the browser request's scope."""
        body = b"" if json is None else orjson.dumps(json)
        headers: list[tuple[bytes, bytes]] = [(b"accept", b"application/json")]
        if token is not None:
            headers.append((b"x-vault-token", token.reveal().encode("latin-1")))
        if body:
            headers.append((b"content-type", content_type.encode("latin-1")))
            headers.append((b"content-length", str(len(body)).encode("latin-1")))
        if reason:
            headers.append((b"x-kustos-reason", reason.encode("utf-8")))
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": origin.get("scheme", "http"),
            "path": "/v1/" + path,
            "raw_path": b"",
            "root_path": "",
            "query_string": urlencode(dict(query)).encode("latin-1") if query else b"",
            "headers": headers,
            "client": origin.get("client"),
            "server": origin.get("server"),
            "path_params": {"path": path},
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 500
        content_type_out = ""
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status, content_type_out
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", ()):
                    if name == b"content-type":
                        content_type_out = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._serve(scope, path, receive, send)
        raw = b"".join(chunks)
        document: dict[str, Any] = {}
        if raw and content_type_out.startswith(_JSON):
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                document = parsed
        return ApiAnswer(status=status, document=document, body=raw, content_type=content_type_out)
