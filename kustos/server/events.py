"""The change hub: who changed which secret, and whose access changed, told the moment it commits.

The KV engine calls :meth:`ChangeHub.publish` after each committed write,
delete, undelete, destroy, metadata write and metadata delete, with the mount,
the path inside it, the version and the kind of change. Never a value: a
:class:`Change` holds names and numbers only, so the stream that carries them
(``GET /v1/sys/events/subscribe``, :mod:`kustos.server.routes.events`) is safe
to log.

Access changes go through the same hub (:meth:`ChangeHub.publish_access`),
so an agent can wipe what it may no longer hold within a second:
``policy`` when a policy is written or deleted (offered to the
subscriptions whose token holds that policy) and ``revoked`` when tokens are
revoked (offered to the subscriptions opened with one of them, matched by the
token's hash; the hash is never sent).

Subscribers (:class:`Subscription`) get their own bounded queue. A slow one
that lets its queue fill is not allowed to grow memory: its queue is emptied
and it receives one *resync* marker instead, meaning "you missed changes;
re-read everything you care about".

The hub also keeps the last :attr:`ChangeHub.history` changes with their
sequence ids, so a client that reconnects with SSE's ``Last-Event-ID`` gets
what it missed (or a resync when the id fell out of the history, or belongs
to another server process, told apart by :attr:`ChangeHub.epoch`).

:class:`StreamReply` is the one streaming variant of
:class:`~kustos.server.calls.Reply`: the dispatcher sends its chunks as they
come instead of one buffered body.

Several replicas on one PostgreSQL: each KV change is also announced with
its commit, and every other replica publishes it on its own hub as it
arrives (:mod:`kustos.server.replicas`), so a subscriber connected to any
replica hears every write. Sequence ids stay per process (a resume on
another replica gets a resync); when announcements may have been missed
(the LISTEN connection was down), every subscriber gets a resync
(:meth:`ChangeHub.resync_all`).
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from kustos.server.calls import Reply

__all__ = ["ACCESS_KINDS", "CHANGE_KINDS", "Change", "ChangeHub", "StreamReply", "Subscription"]

CHANGE_KINDS: Final = frozenset(
    {"write", "delete", "undelete", "destroy", "metadata", "metadata-delete", "revoke"}
)
"""``revoke``: a lease ended (revoked or expired); its ``lease_id`` is set, ``version`` is 0."""
ACCESS_KINDS: Final = frozenset({"policy", "revoked"})
"""Changes of who may read, rather than of a secret: not tied to a mount (``revoked``: a token)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change: where, which version, what kind, when. Never a value."""

    seq: int
    mount: str
    """The mount path with its trailing slash, e.g. ``secret/``."""
    path: str
    """The secret's path inside the mount, e.g. ``team/db``."""
    version: int
    kind: str
    time: float
    lease_id: str = ""
    """For ``revoke``: the lease that ended (``database/creds/app/Xk3...``)."""
    subjects: frozenset[str] = field(default=frozenset(), repr=False)
    """For access kinds: the policy names, or the revoked tokens' hashes (never sent)."""

    def document(self) -> dict[str, object]:
        """The JSON form sent to subscribers (``lease_id`` only on lease events)."""
        doc: dict[str, object] = {
            "mount": self.mount,
            "path": self.path,
            "version": self.version,
            "kind": self.kind,
            "time": self.time,
        }
        if self.lease_id:
            doc["lease_id"] = self.lease_id
        if self.kind == "policy":
            doc["policies"] = sorted(self.subjects)
        return doc


class Subscription:
    """One subscriber's bounded queue of changes under its prefixes (and of its own access)."""

    def __init__(
        self,
        *,
        hub: ChangeHub,
        targets: tuple[tuple[str, str], ...],
        limit: int,
        accept: Callable[[Change], bool],
        token_hash: str = "",
        policies: frozenset[str] = frozenset(),
    ) -> None:
        self.targets = targets
        """``(mount, prefix)`` pairs, e.g. ``(("secret/", "team/db"),)``; none: access changes only."""
        self.mount, self.prefix = targets[0] if targets else ("", "")
        self._token_hash = token_hash
        self._policies = policies
        self._hub = hub
        self._limit = limit
        self._accept = accept
        self._queue: collections.deque[Change] = collections.deque()
        self._ready = asyncio.Event()
        self.overflowed = False
        """Set when changes were dropped; the stream then sends one resync and clears it."""
        self.closed = False

    def matches(self, change: Change) -> bool:
        if change.kind in ACCESS_KINDS:
            if change.kind == "policy":
                return not self._policies.isdisjoint(change.subjects)
            return bool(self._token_hash) and any(
                hmac.compare_digest(self._token_hash, subject) for subject in change.subjects
            )
        return any(
            change.mount == mount and change.path.startswith(prefix)
            for mount, prefix in self.targets
        ) and self._accept(change)

    def offer(self, change: Change) -> None:
        """Queue ``change`` (called by the hub); a full queue turns into one resync marker."""
        if self.overflowed:
            return
        if len(self._queue) >= self._limit:
            self._queue.clear()
            self.overflowed = True
        else:
            self._queue.append(change)
        self._ready.set()

    def backlog(self, changes: Iterator[Change]) -> None:
        """Queue missed changes from the hub's history (on resume)."""
        for change in changes:
            if self.matches(change):
                self.offer(change)

    def mark_resync(self) -> None:
        self._queue.clear()
        self.overflowed = True
        self._ready.set()

    async def next(self, *, timeout: float) -> list[Change] | None:
        """Every queued change (``[]`` with :attr:`overflowed` set means resync); ``None`` after ``timeout``."""
        if not self._queue and not self.overflowed:
            self._ready.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return None
        items = list(self._queue)
        self._queue.clear()
        return items

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub.unsubscribe(self)


class ChangeHub:
    """Fans committed changes out to subscribers; cheap when nobody listens."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        history: int = 4096,
        queue_limit: int = 1024,
    ) -> None:
        self._clock = clock
        self._seq = itertools.count(1)
        self._history: collections.deque[Change] = collections.deque(maxlen=history)
        self._subscribers: dict[str, list[Subscription]] = {}
        self._everyone: list[Subscription] = []
        self.queue_limit = queue_limit
        self.epoch = uuid.uuid4().hex[:12]
        """Tells this process's sequence ids apart from another's (event ids are ``<epoch>-<seq>``)."""
        self.published = 0

    @property
    def subscribers(self) -> int:
        return len(self._everyone)

    def publish(
        self, mount: str, path: str, version: int, kind: str, *, lease_id: str = ""
    ) -> None:
        """Record one committed change and hand it to every matching subscriber."""
        change = Change(
            seq=next(self._seq),
            mount=mount,
            path=path,
            version=version,
            kind=kind,
            time=self._clock(),
            lease_id=lease_id,
        )
        self._history.append(change)
        self.published += 1
        subscribers = self._subscribers.get(mount)
        if subscribers:
            for subscription in subscribers:
                if subscription.matches(change):
                    subscription.offer(change)

    def publish_access(self, kind: str, subjects: frozenset[str]) -> None:
        """Record an access change (``policy`` names, ``revoked`` token hashes) and tell who it concerns."""
        if kind not in ACCESS_KINDS or not subjects:
            return
        change = Change(
            seq=next(self._seq),
            mount="",
            path="",
            version=0,
            kind=kind,
            time=self._clock(),
            subjects=subjects,
        )
        self._history.append(change)
        self.published += 1
        for subscription in self._everyone:
            if subscription.matches(change):
                subscription.offer(change)

    def policy_changed(self, name: str) -> None:
        """A policy was written or deleted (wired to :class:`~kustos.server.policies.PolicyStore`)."""
        self.publish_access("policy", frozenset({name}))

    def tokens_revoked(self, hashes: frozenset[str]) -> None:
        """Tokens were revoked (wired to :class:`~kustos.server.tokens.TokenStore`)."""
        self.publish_access("revoked", hashes)

    def subscribe(
        self,
        *,
        mount: str = "",
        prefix: str = "",
        targets: tuple[tuple[str, str], ...] = (),
        accept: Callable[[Change], bool] = lambda _change: True,
        after: str | None = None,
        token_hash: str = "",
        policies: frozenset[str] = frozenset(),
        access_only: bool = False,
    ) -> Subscription:
        """A new subscription to changes under ``mount`` + ``prefix`` (or each of ``targets``).

        ``after`` is an event id (``<epoch>-<seq>``) the client saw last: the
        changes since then are queued at once, or a resync when they are no
        longer known. ``token_hash`` and ``policies`` (the subscriber's
        token's) select the access changes it hears of.
        """
        subscription = Subscription(
            hub=self,
            targets=() if access_only else targets or ((mount, prefix),),
            limit=self.queue_limit,
            accept=accept,
            token_hash=token_hash,
            policies=policies,
        )
        for mount_path in {m for m, _ in subscription.targets}:
            self._subscribers.setdefault(mount_path, []).append(subscription)
        self._everyone.append(subscription)
        if after is not None:
            seq = self._resume_point(after)
            if seq is None:
                subscription.mark_resync()
            else:
                subscription.backlog(change for change in self._history if change.seq > seq)
        return subscription

    def resync_all(self) -> None:
        """Tell every subscriber to re-read what it follows (changes may have been missed)."""
        for subscription in self._everyone:
            subscription.mark_resync()

    def _resume_point(self, after: str) -> int | None:
        epoch, _, number = after.partition("-")
        if epoch != self.epoch or not number.isdigit():
            return None
        seq = int(number)
        oldest = self._history[0].seq if self._history else None
        if oldest is not None and seq < oldest - 1:
            return None
        return seq

    def unsubscribe(self, subscription: Subscription) -> None:
        for mount in {m for m, _ in subscription.targets}:
            subscribers = self._subscribers.get(mount)
            if subscribers is not None and subscription in subscribers:
                subscribers.remove(subscription)
                if not subscribers:
                    del self._subscribers[mount]
        if subscription in self._everyone:
            self._everyone.remove(subscription)

    def event_id(self, change: Change) -> str:
        return f"{self.epoch}-{change.seq}"

    def last_event_id(self) -> str:
        """The id of the newest change (what a fresh subscriber may resume from)."""
        return f"{self.epoch}-{self._history[-1].seq if self._history else 0}"


@dataclass(slots=True)
class StreamReply(Reply):
    """A reply whose body is produced while it is sent (Server-Sent Events)."""

    stream: AsyncIterator[bytes] | None = field(default=None, repr=False)
    media_type: str = "text/event-stream"
