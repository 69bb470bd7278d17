"""``sys/events/subscribe``: the change stream, so a client learns of a KV change at once.

``GET /v1/sys/events/subscribe?prefix=<mount>/<path-prefix>`` answers with
Server-Sent Events (``text/event-stream``), one ``change`` event per
committed change under the prefix — mount, path, version, kind, time, never
a value — and a ``: heartbeat`` comment every ``heartbeat`` seconds (default
15) so proxies keep idle connections open. Other events: ``ready`` (the
subscription is live), ``resync`` (changes were dropped because the client
read too slowly, or a resume point is unknown: re-read everything) and
``end`` (the stream closes: its lifetime is over, or the token was revoked;
reconnect with ``?last_event_id=<the last id seen>``).

Under a ``database`` mount the stream carries lease events: ``kind``
``revoke`` with the ``lease_id`` that ended (revoked, expired, or its token
revoked), ``path`` ``creds/<role>``, ``version`` 0. A consumer holding that
lease's credentials must drop them (docs/leases.md).

Authorization: the token needs ``read`` on ``<mount>data/<prefix>`` or
``list`` on ``<mount>metadata/<prefix>`` (on a database mount: ``read`` on
``<mount><prefix>``, e.g. ``database/creds/app``), and each change is checked the
same way for its own path, so a token never hears of a path it could not
read or list. The token is looked up again at every heartbeat.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Final

import orjson

from kustos.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.core import Core
from kustos.server.events import Change, ChangeHub, StreamReply, Subscription
from kustos.server.params import int_param
from kustos.server.tokens import TokenEntry

__all__ = ["EventsApi"]

_SUBSCRIBE: Final = "sys/events/subscribe"
_RETRY_MS: Final = 1000
DEFAULT_HEARTBEAT: Final = 15
DEFAULT_LIFETIME: Final = 60.0
"""Seconds a stream stays open; the client resumes with ``Last-Event-ID`` (and a server shutdown waits no longer)."""


def _frame(event: str, data: object, *, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


class EventsApi:
    """Answers ``sys/events/*``."""

    prefix = "sys/events/"

    def __init__(self, core: Core, *, lifetime: float = DEFAULT_LIFETIME) -> None:
        self._core = core
        self._lifetime = lifetime

    @staticmethod
    def route(path: str) -> str:
        return _SUBSCRIBE if path == _SUBSCRIBE else "sys/events/unknown"

    @staticmethod
    def needs_unsealed(path: str) -> bool:
        return True

    def _may(self, token: TokenEntry, mount: str, path: str) -> bool:
        authorizer = self._core.authorizer
        entry = self._core.mounts.get(mount)
        if entry is not None and entry.type == "database":
            # a lease event is heard by whoever may read the credentials it was issued at
            return authorizer(token, f"{mount}{path}".rstrip("/"), "read")
        return authorizer(token, f"{mount}data/{path}", "read") or authorizer(
            token, f"{mount}metadata/{path}", "list"
        )

    async def handle(self, call: Call) -> Reply:
        if call.path != _SUBSCRIBE:
            raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
        if call.method != "GET":
            raise unsupported(call)
        token = call.require_token()
        prefix = call.query.get("prefix", "")
        if not prefix:
            raise InvalidRequestError(
                "prefix is required: a mount and an optional path prefix, e.g. secret/ or secret/team/"
            )
        heartbeat = int_param(
            call.query.get("heartbeat", str(DEFAULT_HEARTBEAT)), field="heartbeat"
        )
        if not 1 <= heartbeat <= 300:
            raise InvalidRequestError("heartbeat must be between 1 and 300 seconds")
        resolved = self._core.mounts.resolve(prefix)
        if resolved is None:
            raise InvalidRequestError(f"prefix {prefix!r} is not under any mount")
        mount, rest = resolved
        if mount.type not in ("kv", "database"):
            raise InvalidRequestError(
                f"prefix {prefix!r} is under a {mount.type} mount; "
                "only kv and database mounts send changes"
            )
        if not self._may(token, mount.path, rest):
            raise PermissionDeniedError("permission denied")
        hub: ChangeHub = self._core.events
        after = call.query.get("last_event_id")
        subscription = hub.subscribe(
            mount=mount.path,
            prefix=rest,
            accept=lambda change: self._may(token, change.mount, change.path),
            after=after or None,
        )
        ready_id = None if after else hub.last_event_id()
        raw_token = call.raw_token.reveal() if call.raw_token is not None else ""
        return StreamReply(stream=self._stream(hub, subscription, raw_token, heartbeat, ready_id))

    async def _stream(
        self,
        hub: ChangeHub,
        subscription: Subscription,
        raw_token: str,
        heartbeat: int,
        ready_id: str | None,
    ) -> AsyncIterator[bytes]:
        try:
            yield f"retry: {_RETRY_MS}\n".encode() + _frame(
                "ready",
                {"mount": subscription.mount, "prefix": subscription.prefix},
                event_id=ready_id,
            )
            deadline = time.monotonic() + self._lifetime
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    yield _frame("end", {"reason": "lifetime"})
                    return
                items = await subscription.next(timeout=min(heartbeat, remaining))
                if items is None:
                    if await self._core.tokens.lookup(raw_token) is None:
                        yield _frame("end", {"reason": "token no longer valid"})
                        return
                    yield b": heartbeat\n\n"
                elif subscription.overflowed:
                    subscription.overflowed = False
                    yield _frame(
                        "resync", {"reason": "changes were dropped"}, event_id=hub.last_event_id()
                    )
                else:
                    yield b"".join(self._change(hub, change) for change in items)
        finally:
            subscription.close()

    @staticmethod
    def _change(hub: ChangeHub, change: Change) -> bytes:
        return _frame("change", change.document(), event_id=hub.event_id(change))
