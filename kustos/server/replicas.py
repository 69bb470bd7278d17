"""Several active replicas on one PostgreSQL: what another replica's commit changes in this one.

Every ``kustos server`` process pointed at the same PostgreSQL database
serves reads and writes (no leader). Each keeps state derived from storage
in memory: the record and token caches, parsed policies, the mount table,
the auth method table, the audit devices, remembered KV mount configs; and
each has a change stream (:class:`~kustos.server.events.ChangeHub`) that
subscribers follow. Nothing of that is polled: the backend's change feed
(LISTEN/NOTIFY, :mod:`kustos.store.changes`) tells every process about
every commit, in commit order, and :class:`Replication` turns each
notification into what it means here:

* changed keys: drop them from the record cache, the token cache (a revoked
  token stops working at once) and the remembered KV configs; a commit that
  touched ``core/policy/``, ``core/mounts``, ``core/auth`` or
  ``core/audit/`` reloads that area (in the background, coalesced);
* announcements, by topic: ``kv`` (:data:`~kustos.server.engines.kv.ANNOUNCEMENT_TOPIC`,
  sent by the KV engine with each change) is published on this replica's
  change stream, so a subscriber here hears a write made on another replica;
  ``tokens`` (a revocation) becomes a ``revoked`` event for the streams of
  those tokens, ``policies`` (a policy written or deleted) reloads the
  policies and then becomes an ``access`` event (the agent re-reads or wipes);
* the feed going down (``watching=False``): caches are emptied and bypassed,
  policies are checked once a second and unknown mount or auth paths re-read
  the tables, as on a shared backend without notifications; the feed coming
  back (``everything=True``): reload every area, stop polling, and send every
  change-stream subscriber a ``resync`` (announcements may have been missed).

This process's own commits come back too (``Changes.local``); their cache
invalidations, announcements and reloads are skipped (it acted on them when
it wrote, as it must on SQLite, where nothing comes back).

**Adding a topic** (how another area reaches every replica):

1. inside the write transaction, ``tx.announce("leases", {"lease_id": ..., "event":
   "revoked"})`` (names and numbers only, never a value; sent only if the
   transaction commits, after its data is visible);
2. at start, ``core.replication.on("leases", handler)``; ``handler(document)`` is called
   on the event loop for every *other* replica's announcement, in commit
   order; it must not block (schedule a task for I/O). On SQLite (one
   process) there are no other replicas and nothing is delivered.

Work that must run once across replicas (lease expiry, scheduled rotation)
takes a PostgreSQL advisory lock in its own transaction; this module does
not elect a leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from kustos.server.auditing import AUDIT_PREFIX, Auditing
from kustos.server.auth.mounts import AUTH_TABLE_KEY, AuthTable
from kustos.server.caching import RecordCache
from kustos.server.engines.kv import ANNOUNCEMENT_TOPIC, KvEngine
from kustos.server.events import ChangeHub
from kustos.server.mounts import MOUNTS_KEY, MountTable
from kustos.server.policies import CHANGED_TOPIC, PolicyStore
from kustos.server.tokens import REVOKED_TOPIC, TokenStore
from kustos.store.base import StorageBackend
from kustos.store.changes import Changes, ChangeWatching, Unsubscribe

__all__ = ["AnnouncementHandler", "Replication"]

AnnouncementHandler = Callable[[Mapping[str, Any]], None]
"""Called with another replica's announcement document, on the event loop; must not block."""

_POLICY_AREA: Final = "core/policy/"
"""Policy documents (``core/policy/acl/``) and their epoch."""
_RETRY: Final = 1.0
_POLL_INTERVAL: Final = 1.0

_log = logging.getLogger("kustos.server.replicas")


class Replication:
    """Follows the storage change feed for one server process (see the module docstring)."""

    def __init__(
        self,
        *,
        storage: StorageBackend,
        cache: RecordCache,
        tokens: TokenStore,
        policies: PolicyStore,
        mounts: MountTable,
        auth_table: AuthTable,
        audit: Auditing,
        events: ChangeHub,
        kv: KvEngine,
    ) -> None:
        self._storage = storage
        self._cache = cache
        self._tokens = tokens
        self._policies = policies
        self._mounts = mounts
        self._auth_table = auth_table
        self._audit = audit
        self._events = events
        self._kv = kv
        self._handlers: dict[str, list[AnnouncementHandler]] = {}
        self._watchers: list[Callable[[Changes], None]] = []
        self._unwatch: Unsubscribe | None = None
        self._reloads: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self.received = 0
        """Notifications received (for tests and metrics)."""
        self._changed_policies: set[str] = set()
        self.on(ANNOUNCEMENT_TOPIC, self._kv_changed)
        self.on(REVOKED_TOPIC, self._tokens_revoked)
        self.on(CHANGED_TOPIC, self._policy_changed)

    @property
    def shared(self) -> bool:
        """Whether other processes may write the same storage (anything but SQLite)."""
        return self._storage.name != "sqlite"

    @property
    def following(self) -> bool:
        """Whether this process follows the change feed (shared storage that announces commits)."""
        return self._unwatch is not None

    def on(self, topic: str, handler: AnnouncementHandler) -> None:
        """Call ``handler`` with every announcement under ``topic`` committed by another replica."""
        self._handlers.setdefault(topic, []).append(handler)

    def watch(self, callback: Callable[[Changes], None]) -> None:
        """Also hand every raw :class:`Changes` event to ``callback`` (for state keyed by storage keys)."""
        self._watchers.append(callback)

    async def start(self) -> None:
        """Subscribe to the change feed (shared storage with notifications only); idempotent."""
        if self._unwatch is None and self.shared and isinstance(self._storage, ChangeWatching):
            self._polling(True)  # until the feed reports it is up
            self._unwatch = await self._storage.watch_changes(self._changed)

    async def close(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        tasks = list(self._reloads.values())
        self._reloads.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    # -- the feed ------------------------------------------------------------------------

    def _changed(self, changes: Changes) -> None:
        self.received += 1
        if not changes.local or changes.everything or not changes.watching:
            # this process's own commits invalidated what they changed when they wrote
            self._cache.apply_changes(changes)
            self._tokens.apply_changes(changes)
            self._kv.forget_configs(changes)
        for watcher in self._watchers:
            try:
                watcher(changes)
            except Exception:
                _log.exception("a change watcher failed")
        if not changes.watching:
            self._polling(True)
            return
        if changes.everything:
            self._polling(False)
            for area in ("policies", "mounts", "auth", "audit"):
                self._reload(area)
            self._events.resync_all()
            return
        if changes.local:
            return
        for announcement in changes.announcements:
            for handler in self._handlers.get(announcement.topic, ()):
                try:
                    handler(announcement.document)
                except Exception:
                    _log.exception(
                        "an announcement handler failed", extra={"topic": announcement.topic}
                    )
        if _touches_area(changes, _POLICY_AREA):
            self._reload("policies")
        if changes.touches(MOUNTS_KEY):
            self._reload("mounts")
        if changes.touches(AUTH_TABLE_KEY):
            self._reload("auth")
        if _touches_area(changes, AUDIT_PREFIX):
            self._reload("audit")

    def _polling(self, on: bool) -> None:
        """Fall back to checking storage (the feed is down), or stop (it is up)."""
        self._policies.poll(_POLL_INTERVAL if on else None)
        self._mounts.reload_on_miss = on
        self._auth_table.reload_on_miss = on

    def _tokens_revoked(self, document: Mapping[str, Any]) -> None:
        revoked = document.get("revoked")
        if isinstance(revoked, list):
            self._events.tokens_revoked(frozenset(str(digest) for digest in revoked))

    def _policy_changed(self, document: Mapping[str, Any]) -> None:
        """Another replica changed a policy: reload, then tell the subscribers it concerns."""
        self._changed_policies.add(str(document.get("name", "")))
        self._reload("policies")

    async def _load_policies(self) -> None:
        await self._policies.load()
        names, self._changed_policies = self._changed_policies, set()
        for name in sorted(names):
            if name:
                self._events.policy_changed(name)

    def _kv_changed(self, document: Mapping[str, Any]) -> None:
        try:
            mount, path = str(document["mount"]), str(document["path"])
            version, kind = int(document["version"]), str(document["kind"])
        except (KeyError, TypeError, ValueError):
            _log.warning("ignoring a malformed kv announcement")
            return
        self._events.publish(mount, path, version, kind)

    # -- reloads ---------------------------------------------------------------------------

    def _reload(self, area: str) -> None:
        """Reload ``area`` in the background; a reload asked for while one runs runs again after it."""
        if area in self._reloads:
            self._again.add(area)
            return
        task = asyncio.get_running_loop().create_task(self._run_reload(area))
        self._reloads[area] = task

    async def _run_reload(self, area: str) -> None:
        try:
            while True:
                self._again.discard(area)
                try:
                    await self._loader(area)()
                except Exception as exc:
                    _log.warning(
                        f"reloading {area} after another replica's change failed ({type(exc).__name__}); retrying"
                    )
                    await asyncio.sleep(_RETRY)
                    self._again.add(area)
                if area not in self._again:
                    return
        finally:
            self._reloads.pop(area, None)

    def _loader(self, area: str) -> Callable[[], Awaitable[None]]:
        if area == "policies":
            return self._load_policies
        if area == "mounts":
            return self._mounts.load
        if area == "auth":
            return self._auth_table.load
        return self._reload_audit

    async def _reload_audit(self) -> None:
        self._audit.needs_load = True  # the next request reopens the devices


def _touches_area(changes: Changes, prefix: str) -> bool:
    """Whether a commit changed a key under ``prefix`` (or deleted a prefix overlapping it)."""
    return any(key.startswith(prefix) for key in changes.keys) or any(
        p.startswith(prefix) or prefix.startswith(p) for p in changes.prefixes
    )
