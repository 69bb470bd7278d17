"""Following the server's change stream (``GET /v1/sys/events/subscribe``), asynchronously.

The operator's ``kustos`` provider uses this to learn of a KV change the
moment it commits, instead of polling. :func:`subscribe` opens one stream and
yields its events; :func:`follow` keeps a stream open for as long as the
caller iterates: it reconnects with a growing back-off when the stream drops,
resumes from the last event id it saw (the server replays what was missed, or
sends ``resync`` when it cannot), and yields a synthetic ``disconnected``
event each time the stream is lost so the caller can fall back to polling.

Events carry names and numbers only (mount, path, version, kind, time);
never a value. Besides ``change`` the server sends ``access`` (a policy the
token holds changed: re-check what it may read) and ``revoked`` (the token
was revoked; the stream then ends); ``prefixes`` follows several prefixes on
one stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx

from kustos.client.errors import ServerUnreachableError, error_from_response
from kustos.errors import KustosError, PermissionDeniedError
from kustos.sensitive import Sensitive

__all__ = ["SUBSCRIBE_PATH", "StreamEvent", "aclose_quietly", "follow", "subscribe"]

SUBSCRIBE_PATH: Final = "/v1/sys/events/subscribe"

_log = logging.getLogger("kustos.client.events")


@dataclass(frozen=True)
class StreamEvent:
    """One event: ``ready``, ``change``, ``access``, ``revoked``, ``resync``, ``end`` (from the server)
    or ``disconnected`` (from :func:`follow`)."""

    type: str
    id: str | None = None
    mount: str = ""
    path: str = ""
    version: int = 0
    kind: str = ""
    time: float = 0.0
    lease_id: str = ""
    """For ``kind == "revoke"``: the lease that ended; whoever holds its credentials drops them."""
    policies: tuple[str, ...] = ()
    """For ``access``: the policies that changed."""

    @property
    def key(self) -> str:
        """``<mount>/<path>`` without a doubled slash, e.g. ``secret/team/db``."""
        return f"{self.mount.rstrip('/')}/{self.path}" if self.path else self.mount.rstrip("/")


def _event(kind: str, event_id: str | None, data: str) -> StreamEvent:
    try:
        doc: Any = json.loads(data) if data else {}
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    return StreamEvent(
        type=kind,
        id=event_id,
        mount=str(doc.get("mount") or ""),
        path=str(doc.get("path") or ""),
        version=int(doc.get("version") or 0),
        kind=str(doc.get("kind") or ""),
        time=float(doc.get("time") or 0.0),
        lease_id=str(doc.get("lease_id") or ""),
        policies=tuple(str(p) for p in doc.get("policies") or () if isinstance(p, str)),
    )


async def subscribe(
    http: httpx.AsyncClient,
    *,
    prefix: str,
    token: Sensitive[str] | None,
    last_event_id: str | None = None,
    heartbeat: int | None = None,
    prefixes: Sequence[str] | None = None,
) -> AsyncGenerator[StreamEvent, None]:
    """Open one stream on ``http`` (whose ``base_url`` is the server) and yield its events until it ends.

    ``prefixes`` (when given, instead of ``prefix``) follows several prefixes
    on one stream (``[]``: only ``access`` and ``revoked`` events). Raises a ``kustos.errors`` exception when the server
    refuses (403, 400, 404), :class:`ServerUnreachableError` when it cannot
    be reached.
    """
    params: dict[str, str] = (
        {"prefixes": json.dumps(list(prefixes))} if prefixes is not None else {"prefix": prefix}
    )
    if last_event_id:
        params["last_event_id"] = last_event_id
    if heartbeat is not None:
        params["heartbeat"] = str(heartbeat)
    headers = {"Accept": "text/event-stream"}
    if token is not None:
        headers["X-Vault-Token"] = token.reveal()
    timeout = httpx.Timeout(
        connect=10.0, read=float(heartbeat or 15) * 3 + 5.0, write=10.0, pool=10.0
    )
    try:
        async with http.stream(
            "GET", SUBSCRIBE_PATH, params=params, headers=headers, timeout=timeout
        ) as response:
            if response.status_code != 200:
                await response.aread()
                try:
                    body = response.json()
                except ValueError:
                    body = None
                raise error_from_response(
                    status=response.status_code, body=body, method="GET", path=SUBSCRIBE_PATH
                )
            kind, event_id = "message", None
            data: list[str] = []
            async for line in response.aiter_lines():
                if not line:
                    if data or kind != "message":
                        yield _event(kind, event_id, "\n".join(data))
                    kind, event_id, data = "message", None, []
                elif line.startswith(":"):
                    continue
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        kind = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        event_id = value
    except httpx.HTTPError as exc:
        raise ServerUnreachableError(str(http.base_url), type(exc).__name__) from None


async def follow(
    http: httpx.AsyncClient,
    *,
    prefix: str,
    token: Callable[[], Sensitive[str] | None],
    backoff: tuple[float, float] = (0.2, 30.0),
    heartbeat: int | None = None,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> AsyncGenerator[StreamEvent, None]:
    """Yield events forever, reconnecting (and resuming) after every drop.

    After a drop a ``disconnected`` event is yielded, then the next
    connection's events; a reconnect resumes from the last id seen. ``token``
    is called before each connection (so a rotated token is picked up).
    """
    first, most = backoff
    delay = first
    last_id: str | None = None
    while True:
        reason = "stream ended"
        try:
            events = subscribe(
                http, prefix=prefix, token=token(), last_event_id=last_id, heartbeat=heartbeat
            )
            async with contextlib.aclosing(events):
                async for event in events:
                    if event.id:
                        last_id = event.id
                    if event.type == "ready":
                        delay = first
                    if event.type == "end":  # lifetime over: resume at once, nothing was lost
                        reason = ""
                        break
                    yield event
            if not reason:
                continue
        except PermissionDeniedError:
            reason = "permission denied"
            delay = most
        except KustosError as exc:
            reason = str(exc)
        _log.info(
            "change stream for %s dropped (%s); reconnecting in %.1f s", prefix, reason, delay
        )
        yield StreamEvent(type="disconnected")
        await sleep(delay)
        delay = min(delay * 2, most)


async def aclose_quietly(iterator: AsyncIterator[StreamEvent]) -> None:
    """Close a :func:`follow` iterator, ignoring errors (for ``finally`` blocks)."""
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            await closer()
