"""``sys/events/subscribe``: the change stream, so a client learns of a KV change at once.

``GET /v1/sys/events/subscribe?prefix=<mount>/<path-prefix>`` answers with
Server-Sent Events (``text/event-stream``), one ``change`` event per
committed change under the prefix — mount, path, version, kind, time, never
a value — and a ``: heartbeat`` comment every ``heartbeat`` seconds (default
15) so proxies keep idle connections open. ``?prefixes=<JSON array>`` (at
most 500) subscribes to several prefixes, in any KV mounts, on one stream:
the agent follows exactly the secrets it uses (``[]``: access events only).
A prefix the token may not read now is not refused there: it is listed in
the ``ready`` event's ``denied``, and its changes flow once a policy allows
them (each change is checked when it is sent), so an agent keeps one stream
across policy changes. Other events: ``ready`` (the
subscription is live), ``resync`` (changes were dropped because the client
read too slowly, or a resume point is unknown: re-read everything),
``access`` (a policy the token holds was written or deleted: what it may
read may have changed), ``revoked`` (the token was revoked; the stream
closes) and ``end`` (the stream closes: its lifetime is over, or the token
is no longer valid; reconnect with ``?last_event_id=<the last id seen>``).

Under a ``database`` mount the stream carries lease events: ``kind``
``revoke`` with the ``lease_id`` that ended (revoked, expired, or its token
revoked), ``path`` ``creds/<role>``, ``version`` 0. A consumer holding that
lease's credentials must drop them (docs/leases.md).

Authorization: for ``prefix`` the token needs ``read`` on
``<mount>data/<prefix>`` or ``list`` on ``<mount>metadata/<prefix>`` (on a
database mount: ``read`` on ``<mount><prefix>``, e.g. ``database/creds/app``),
else 403; each change is checked the same way for its own path when it is
sent, so a token never hears of a path it could not read or list. The token is looked up again at every
heartbeat (which also catches a revocation made by another replica).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
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
_MAX_PREFIXES: Final = 500
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

    @staticmethod
    def needs_token(path: str) -> bool:
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
        prefixes = _prefixes(call.query)
        heartbeat = int_param(
            call.query.get("heartbeat"),
            field="heartbeat",
            minimum=1,
            maximum=300,
            default=DEFAULT_HEARTBEAT,
        )
        targets: list[tuple[str, str]] = []
        denied: list[str] = []
        for prefix in prefixes:
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
                if "prefixes" not in call.query:
                    raise PermissionDeniedError("permission denied")
                denied.append(prefix)  # followed anyway: each change is checked when it is sent
            targets.append((mount.path, rest))
        hub: ChangeHub = self._core.events
        after = call.query.get("last_event_id")
        subscription = hub.subscribe(
            targets=tuple(dict.fromkeys(targets)),
            access_only=not targets,
            accept=lambda change: self._may(token, change.mount, change.path),
            after=after or None,
            token_hash=token.id_hash,
            policies=frozenset() if token.is_root else frozenset(token.policies),
        )
        ready_id = None if after else hub.last_event_id()
        raw_token = call.raw_token.reveal() if call.raw_token is not None else ""
        return StreamReply(
            stream=self._stream(hub, subscription, raw_token, heartbeat, ready_id, denied)
        )

    async def _stream(
        self,
        hub: ChangeHub,
        subscription: Subscription,
        raw_token: str,
        heartbeat: int,
        ready_id: str | None,
        denied: list[str],
    ) -> AsyncIterator[bytes]:
        try:
            ready: dict[str, object] = {"mount": subscription.mount, "prefix": subscription.prefix}
            if len(subscription.targets) != 1:
                ready["prefixes"] = len(subscription.targets)
            if denied:
                ready["denied"] = denied
            yield f"retry: {_RETRY_MS}\n".encode() + _frame("ready", ready, event_id=ready_id)
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
                    revoked = next((c for c in items if c.kind == "revoked"), None)
                    frames = b"".join(
                        self._change(hub, change) for change in items if change.kind != "revoked"
                    )
                    if frames:
                        yield frames
                    if revoked is not None:
                        yield _frame(
                            "revoked",
                            {"reason": "the token was revoked", "time": revoked.time},
                            event_id=hub.event_id(revoked),
                        )
                        return
        finally:
            subscription.close()

    @staticmethod
    def _change(hub: ChangeHub, change: Change) -> bytes:
        event = "access" if change.kind == "policy" else "change"
        return _frame(event, change.document(), event_id=hub.event_id(change))


def _prefixes(query: Mapping[str, str]) -> list[str]:
    raw = query.get("prefixes")
    if raw is None:
        prefix = query.get("prefix", "")
        if not prefix:
            raise InvalidRequestError(
                "prefix is required: a mount and an optional path prefix, e.g. secret/ or secret/team/"
            )
        return [prefix]
    try:
        prefixes = orjson.loads(raw)
    except orjson.JSONDecodeError:
        prefixes = None
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and p for p in prefixes):
        raise InvalidRequestError("prefixes must be a JSON array of non-empty strings")
    if len(prefixes) > _MAX_PREFIXES:
        raise InvalidRequestError(
            f"at most {_MAX_PREFIXES} prefixes per stream (open several streams)"
        )
    return list(dict.fromkeys(prefixes))
