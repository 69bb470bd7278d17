"""The ASGI application: Vault's URL space under ``/v1/``, plus ``/metrics`` and the console (``/ui/``).

:func:`create_app` builds a Starlette app with two routes. ``/v1/{path}`` is
one lean ASGI callable (:class:`_Api`) that does, per request: validate the
path, pick the handler (``sys/*``, ``auth/token/*``, or the engine of the
mount with the longest matching prefix), refuse data paths while sealed,
look up the token, read the body within the size limit, run the handler
and answer with Vault's envelope or ``{"errors": [...]}``. Statuses come
from the one table in :mod:`kustos.server.errors`. Every request gets a
request id (``X-Request-Id``, echoed; generated when absent), is counted in
the metrics by route *template* (never the secret path) and, with the
access log on, logged as one JSON line without values or tokens.

Vault clients send ``LIST``; ``GET ?list=true`` means the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from kustos.audit import AuditWriteError
from kustos.config import ServerConfig
from kustos.errors import (
    ConfigError,
    DecryptionError,
    InvalidRequestError,
    InvalidTokenError,
    KeyProviderError,
    KustosError,
    NotFoundError,
    PermissionDeniedError,
    SealedError,
    StorageError,
)
from kustos.sensitive import Sensitive
from kustos.server.access import Authorizer, authorize, is_login_path
from kustos.server.auditing import AuditCall
from kustos.server.calls import Call, Reply, envelope, validate_api_path
from kustos.server.committing import CommitGate
from kustos.server.console import Settings as ConsoleSettings
from kustos.server.console import console_routes
from kustos.server.core import Core
from kustos.server.engines import Engine
from kustos.server.errors import RequestTooLargeError, error_body, public_message, status_for
from kustos.server.events import StreamReply
from kustos.server.mounts import MountEntry
from kustos.server.observability import METRICS_CONTENT_TYPE
from kustos.server.params import check_nesting
from kustos.server.routes import PathApi, build_apis
from kustos.server.routes.bound import KAMUS_ENCRYPT
from kustos.server.times import Clock
from kustos.store.base import COMMIT_HOOK

__all__ = ["BODY_SLACK", "KAMUS_ENCRYPT_URL", "KustosApp", "create_app"]

BODY_SLACK: Final = 64 * 1024
"""Bytes a request body may exceed ``max_value_bytes`` by (JSON framing, options)."""

KAMUS_ENCRYPT_URL: Final = "/api/v1/encrypt"
"""Kamus's encrypt endpoint, answered by ``sys/bound/kamus/encrypt``."""

_log = logging.getLogger("kustos.server.http")
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_BODYLESS: Final = frozenset({"GET", "HEAD", "LIST"})
_NO_BODY: Final = frozenset({204, 205, 304})
"""Statuses whose responses carry no body (HTTP forbids one)."""
_JSON: Final = b"application/json"
_perf_counter: Final = time.perf_counter


class _ClientGoneError(Exception):
    """The client disconnected before sending its whole body."""


class _BodyTimeoutError(Exception):
    """The client did not send its whole body within the body timeout (answered 408, connection closed)."""


class _RequestIds:
    """UUID-shaped request ids: a random per-process prefix and a counter (no syscall per request)."""

    def __init__(self) -> None:
        prefix = uuid.uuid4().hex
        self._prefix = f"{prefix[:8]}-{prefix[8:12]}-{prefix[12:16]}-{prefix[16:20]}-"
        self._counter = int(prefix[20:], 16)

    def next(self) -> str:
        self._counter = counter = (self._counter + 1) & 0xFFFFFFFFFFFF
        return self._prefix + counter.to_bytes(6, "big").hex()  # cheaper than a format spec


class KustosApp(Starlette):
    """Starlette, with requests under ``/v1/`` sent straight to the API endpoint (no router, no middleware)."""

    def __init__(self, *, api: _Api, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/v1/"):
                await self._api.serve(scope, path[4:], receive, send)
                return
            if path == KAMUS_ENCRYPT_URL:  # Kamus's encrypt API, for migration (sys/bound/*)
                await self._api.serve(scope, KAMUS_ENCRYPT, receive, send)
                return
        await super().__call__(scope, receive, send)


@dataclass
class _Holder:
    core: Core | None = None


class _Api:
    """The ``/v1/{path}`` endpoint as a plain ASGI callable (no per-request Request/Response objects)."""

    def __init__(
        self, holder: _Holder, *, access_log: bool, max_body: int, body_timeout: float
    ) -> None:
        self._holder = holder
        self._body_timeout = body_timeout
        self._access_log = access_log
        self._max_body = max_body
        self._apis_built: list[PathApi] | None = None
        self._api_heads: frozenset[str] | None = None
        self._ids = _RequestIds()

    def _apis(self, core: Core) -> list[PathApi]:
        if self._apis_built is None:
            self._apis_built = build_apis(core)
            # An API prefix only matches paths with the same first segment (see the dispatch loop),
            # so a path whose first segment starts no prefix (a KV read) skips the loop.
            prefixes = [api.prefix for api in self._apis_built]
            self._api_heads = (
                None if "" in prefixes else frozenset(p.partition("/")[0] for p in prefixes)
            )
        return self._apis_built

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.serve(scope, scope["path_params"]["path"], receive, send)

    async def serve(self, scope: Scope, path: str, receive: Receive, send: Send) -> None:
        """Answer one request for ``/v1/<path>``."""
        started = _perf_counter()
        core = self._holder.core
        method: str = scope["method"]
        token_text: str | None = None
        content_type = ""
        content_length: int | None = None
        request_id: str | None = None
        reason: str | None = None
        wrap_requested = False
        for name, value in scope["headers"]:
            if name == b"x-vault-token":
                token_text = value.decode("latin-1").strip()
            elif name == b"authorization":
                if token_text is None and value[:7].lower() == b"bearer ":
                    token_text = value[7:].decode("latin-1").strip()
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    content_length = None
            elif name == b"x-request-id":
                text = value.decode("latin-1")
                if _REQUEST_ID.fullmatch(text):
                    request_id = text
            elif name == b"x-kustos-reason":
                reason = value.decode("utf-8", "replace").strip() or None
            elif name == b"x-vault-wrap-ttl":
                wrap_requested = True
        if request_id is None:
            request_id = self._ids.next()
        raw_query: bytes = scope["query_string"]
        query: dict[str, str] = dict(parse_qsl(raw_query.decode("latin-1"))) if raw_query else {}
        if method == "GET" and query.get("list") in ("true", "1"):
            method = "LIST"

        route = "unknown"
        close = False
        status = 500
        body = b""
        reply_type = _JSON
        stream: StreamReply | None = None
        if core is None:
            status, body = 503, error_body("server is starting")
        else:
            apis = self._apis(core)
            handler: Callable[[Call], Any] | None = None
            mount: MountEntry | None = None
            engine: Engine | None = None
            rest = ""
            audit: AuditCall | None = None
            audit_reply: Any = None
            gate: CommitGate | None = None
            gate_token: contextvars.Token[Callable[[], Awaitable[None]] | None] | None = None
            auditing = core.audit
            try:
                if auditing.needs_load:
                    audit = await auditing.begin(
                        scope=scope, request_id=request_id, method=method, path=path
                    )
                elif auditing.active:
                    audit = auditing.start(
                        scope=scope, request_id=request_id, method=method, path=path
                    )
                unauthenticated = False
                anonymous_ok = False
                heads = self._api_heads
                for api in apis if heads is None or path.partition("/")[0] in heads else ():
                    # a prefix without a trailing "/" is an exact path (cert.pem, verify, rotate)
                    if path.startswith(api.prefix) and (
                        api.prefix[-1] == "/" or len(path) == len(api.prefix)
                    ):
                        route = api.route(path)
                        unauthenticated = not api.needs_unsealed(path)
                        anonymous_ok = not api.needs_token(path)
                        handler = api.handle
                        break
                else:
                    resolved = core.mounts.resolve(path)
                    if resolved is not None:
                        mount, rest = resolved
                        engine = core.engines.get(mount.type)
                        route = engine.route(method, rest) if engine is not None else "unknown"
                validate_api_path(path)
                if wrap_requested:
                    raise InvalidRequestError(
                        "response wrapping (X-Vault-Wrap-TTL) is not supported by this server"
                    )
                if not unauthenticated and not core.serving:
                    raise SealedError(
                        "the server is finishing its unseal; retry shortly"
                        if core.migrating
                        else "Vault is sealed"
                    )
                entry = None
                if token_text and not unauthenticated:
                    entry = core.tokens.cached(token_text)
                    if entry is None:
                        entry = await core.tokens.lookup(token_text)
                        if entry is None and not is_login_path(path):
                            raise InvalidTokenError()
                elif not anonymous_ok:  # refused before the body is read or parsed
                    raise PermissionDeniedError("permission denied")
                payload = b""
                if method not in _BODYLESS or content_length:
                    payload = await self._read_body(receive, content_length)
                    if payload:  # before anything parses it (audit, policy checks, handlers)
                        check_nesting(payload)
                call = Call(
                    method=method,
                    path=path,
                    query=query,
                    body=payload,
                    content_type=content_type,
                    request_id=request_id,
                    token=entry,
                    reason=reason,
                    raw_token=Sensitive(token_text) if token_text else None,
                )
                if audit is not None:  # before anything happens; AuditWriteError refuses the call
                    read_only = engine is not None and engine.read_only(method, rest)
                    audit.request(call, mount, read_only=read_only)
                    if not read_only:  # its answer is audited before its change commits
                        gate = CommitGate(audit)
                        gate_token = COMMIT_HOOK.set(gate)
                if entry is not None and not entry.is_root:
                    await core.policies.refresh_if_stale()
                    problem = core.policies.parameter_problem(
                        entry, path.rstrip("/"), method, call.json() if payload.strip() else query
                    )
                    if problem is not None:
                        raise PermissionDeniedError(f"permission denied: {problem}")
                try:
                    if handler is not None:
                        reply: Reply = await handler(call)
                    elif engine is not None and mount is not None:
                        reply = await engine.handle(call, mount, rest)
                    else:
                        reply = await self._engine(core, call, mount, rest)
                finally:
                    if gate_token is not None:
                        COMMIT_HOOK.reset(gate_token)
                status = reply.status
                audit_reply = reply
                if reply.__class__ is StreamReply:
                    stream = reply
                else:
                    body = envelope(reply, request_id=request_id)
                    if reply.content_type is not None:
                        reply_type = reply.content_type.encode("latin-1")
            except AuditWriteError as exc:
                status, body = 503, error_body(f"audit log unavailable, request refused: {exc}")
                _log.error(
                    "audit log unavailable",
                    extra={"request_id": request_id, "route": route, "error": str(exc)},
                )
            except KustosError as exc:
                status = status_for(exc)
                message = public_message(exc)
                body = error_body(message) if message else error_body()
                self._note_error(
                    core, exc, route=route, method=method, path=path, request_id=request_id
                )
            except _ClientGoneError:
                status, body = 400, error_body("client disconnected")
            except _BodyTimeoutError:
                status = 408
                body = error_body(
                    f"the request body was not received within {self._body_timeout:g} seconds"
                )
                close = True
            except Exception:
                status = 500
                body = error_body(f"internal error; see the server log for request id {request_id}")
                _log.exception(
                    "unexpected error",
                    extra={"request_id": request_id, "route": route, "method": method},
                )
            if audit is not None:
                if (
                    gate is not None
                    and gate.written
                    and (audit_reply is gate.reply or audit_reply == gate.reply)
                ):
                    refused = None  # its response entry was written before the commit
                else:
                    refused = audit.response(status=status, reply=audit_reply, body=body)
                    if (
                        refused is None and audit.staged is not None
                    ):  # a read: its entries go out with others'
                        refused = await core.audit.flushed(audit)
                    if gate is not None and gate.reached_commit and not gate.written:
                        core.metrics.unreserved_commit(route)
                        if refused is not None and status < 400:
                            # the change is committed: answer what happened, never "refused"
                            _log.error(
                                "audit response entry lost after a commit; answered as committed",
                                extra={"request_id": request_id, "route": route},
                            )
                            refused = None
                if refused is not None:
                    (status, body), stream = refused, None
        if stream is not None and core is not None:
            core.metrics.observe_request(route, method, status, _perf_counter() - started)
            await _send_stream(stream, request_id=request_id, receive=receive, send=send)
            return
        if status < 200 or status > 599:  # never sent: 1xx is not final, others are not HTTP
            _log.error("handler answered an invalid status", extra={"request_id": request_id})
            status, body, reply_type = 500, error_body("internal error: invalid status"), _JSON
        headers = [
            (b"x-request-id", request_id.encode("latin-1")),
            (b"cache-control", b"no-store"),
        ]
        bodyless = status in _NO_BODY
        if not bodyless:
            headers.append((b"content-type", reply_type if status < 400 else _JSON))
            headers.append((b"content-length", str(len(body)).encode("latin-1")))
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {
                "type": "http.response.body",
                "body": b"" if method == "HEAD" or bodyless else body,
            }
        )
        elapsed = _perf_counter() - started
        if core is not None:
            core.metrics.observe_request(route, method, status, elapsed)
        if self._access_log:
            _log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )

    @staticmethod
    async def _engine(core: Core, call: Call, mount: MountEntry | None, rest: str) -> Reply:
        """Dispatch to the engine of the mount (re-reading the mount table once if none matched)."""
        if mount is None and await core.mounts.reload_if_stale():
            resolved = core.mounts.resolve(call.path)
            if resolved is not None:
                mount, rest = resolved
        engine = core.engines.get(mount.type) if mount is not None else None
        if mount is None or engine is None:
            raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
        return await engine.handle(call, mount, rest)

    async def _read_body(self, receive: Receive, content_length: int | None) -> bytes:
        """The whole body, within the size limit and the body timeout (``TimeoutError`` after it)."""
        limit = self._max_body
        if content_length is not None and content_length > limit:
            raise RequestTooLargeError(f"request body is larger than the maximum of {limit} bytes")
        try:
            async with asyncio.timeout(self._body_timeout):
                return await self._receive_body(receive, limit)
        except TimeoutError:
            raise _BodyTimeoutError() from None

    @staticmethod
    async def _receive_body(receive: Receive, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGoneError()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestTooLargeError(
                    f"request body is larger than the maximum of {limit} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def _note_error(
        core: Core, exc: KustosError, *, route: str, method: str, path: str, request_id: str
    ) -> None:
        fields = {"request_id": request_id, "route": route, "method": method}
        if isinstance(exc, DecryptionError):
            core.metrics.integrity_error()
            _log.warning(
                "integrity check failed for a stored record", extra={**fields, "path": path}
            )
        elif isinstance(exc, StorageError):
            core.metrics.storage_error(route=route)
            _log.error("storage failure", extra={**fields, "error": str(exc)})
        elif isinstance(exc, KeyProviderError | ConfigError):
            _log.error("key provider or configuration failure", extra={**fields, "error": str(exc)})


async def _send_stream(
    reply: StreamReply, *, request_id: str, receive: Receive, send: Send
) -> None:
    """Send a streaming reply chunk by chunk until it ends or the client goes away."""
    headers = [
        (b"x-request-id", request_id.encode("latin-1")),
        (b"cache-control", b"no-store"),
        (b"content-type", reply.media_type.encode("latin-1")),
        (b"x-accel-buffering", b"no"),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    chunks = reply.stream

    async def pump() -> None:
        if chunks is not None:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(watch())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        if chunks is not None and hasattr(chunks, "aclose"):
            await chunks.aclose()
    if tasks[0] in done and tasks[1] not in done:  # the stream ended; the client is still there
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def create_app(
    config: ServerConfig,
    *,
    core: Core | None = None,
    clock: Clock = time.time,
    authorizer: Authorizer = authorize,
    cache_entries: int | None = None,
) -> KustosApp:
    """Build the ASGI app for ``config``.

    Pass an opened ``core`` (``await Core.open(config)``) to share it, as
    :func:`kustos.server.running.serve` and tests do; otherwise the app
    opens its own core on lifespan startup and closes it on shutdown.
    """
    holder = _Holder(core=core)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = holder.core is None
        if owned:
            holder.core = await Core.open(
                config, clock=clock, authorizer=authorizer, cache_entries=cache_entries
            )
        sealing = holder.core.sealing if holder.core is not None else None
        timers = holder.core.timers if holder.core is not None else None
        if sealing is not None:
            sealing.start()  # sealing key renewal timer
        if timers is not None:
            timers.start()  # lease expiry and scheduled rotations (what fell due while down, at once)
        try:
            yield
        finally:
            if timers is not None:
                await timers.stop()
            if sealing is not None:
                await sealing.stop()
            if owned and holder.core is not None:
                await holder.core.close()
                holder.core = None

    async def metrics(request: Request) -> Response:
        current = holder.core
        if current is None:
            return Response(b"", status_code=503)
        current.refresh_seal_metrics()
        return Response(current.metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    api = _Api(
        holder,
        access_log=config.access_log,
        max_body=config.max_value_bytes + BODY_SLACK,
        body_timeout=config.body_timeout,
    )
    routes: list[BaseRoute] = [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/{path:path}", api),
    ]
    if config.ui:  # the web console, a client of this API in process (kustos.server.console)
        routes += console_routes(
            serve=api.serve,
            core=lambda: holder.core,
            settings=ConsoleSettings(max_form_bytes=3 * config.max_value_bytes + BODY_SLACK),
        )
    return KustosApp(api=api, routes=routes, lifespan=lifespan)
