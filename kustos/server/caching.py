"""An in-memory read cache of storage records, safe against concurrent writes.

Reads on the hot path (a KV read touches the secret's metadata and one
version's ciphertext) would otherwise cost a storage round trip each. The
cache keeps what storage returned: ciphertexts stay encrypted, metadata is
kept parsed. It is correct for one server process that owns its storage
(SQLite). With shared storage (several replicas on PostgreSQL) it is used
only when the backend reports every commit (:mod:`kustos.store.changes`):
:meth:`RecordCache.apply_changes` forgets what another replica changed as
soon as its notification arrives, and while the feed is down the cache is
emptied and bypassed (every read goes to storage, nothing is kept) until
the feed is back.

Consistency: every write goes through :meth:`RecordCache.writing`, which
bumps an epoch and counts writes in flight before the transaction and drops
the touched keys after it. A read fills the cache only if no write started
or finished while it was reading, so a stale value read concurrently with
a write is never cached; a change notification counts as a write finishing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

from kustos.store.base import StorageBackend
from kustos.store.changes import Changes

__all__ = ["RecordCache"]

_T = TypeVar("_T")
_ABSENT: Final = object()


class RecordCache:
    """Caches ``storage.get`` results (decoded), bounded by entries and bytes."""

    def __init__(
        self,
        *,
        storage: StorageBackend,
        max_entries: int,
        max_bytes: int = 64 * 1024 * 1024,
        bypass: bool = False,
        on_forget: Callable[[], None] | None = None,
    ) -> None:
        """``bypass``: start without caching (shared storage, until the change feed reports ``watching``).

        ``on_forget`` is called whenever cached records are dropped because they
        changed (or everything is dropped): the server clears what it derived
        from them (:meth:`kustos.server.barrier.Barrier.forget_plaintexts`).
        """
        self._on_forget = on_forget
        self._storage = storage
        self._bypass = bypass
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._data: dict[str, tuple[Any, int]] = {}
        self._bytes = 0
        self._epoch = 0
        self._writers = 0

    @property
    def enabled(self) -> bool:
        return self._max_entries > 0

    @property
    def bypassed(self) -> bool:
        """Whether reads currently go straight to storage (the change feed is down)."""
        return self._bypass

    def peek(self, key: str) -> tuple[Any, int] | None:
        """The cached ``(decoded value, size)`` for ``key``, or ``None`` on a miss (then :meth:`get`).

        The synchronous half of :meth:`get` for the hot path: a hit costs no coroutine.
        """
        return self._data.get(key)

    async def get(self, key: str, decode: Callable[[bytes], _T]) -> _T | None:
        """``decode(storage.get(key))`` (``None`` if absent), from memory when possible."""
        hit = self._data.get(key, _ABSENT)
        if hit is not _ABSENT:
            value: _T | None = hit[0]  # type: ignore[index]
            return value
        epoch = self._epoch
        raw = await self._storage.get(key)
        decoded = None if raw is None else decode(raw)
        if self._max_entries and epoch == self._epoch and not self._writers and not self._bypass:
            self._insert(key, decoded, len(raw) if raw is not None else 0)
        return decoded

    def _insert(self, key: str, value: object, size: int) -> None:
        if size > self._max_bytes // 8:
            return
        data = self._data
        while data and (len(data) >= self._max_entries or self._bytes + size > self._max_bytes):
            oldest = next(iter(data))
            self._bytes -= data.pop(oldest)[1]
        data[key] = (value, size)
        self._bytes += size

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[list[str]]:
        """Wrap a write transaction; append every key it changes to the yielded list."""
        touched: list[str] = []
        self._epoch += 1
        self._writers += 1
        try:
            yield touched
        finally:
            self._writers -= 1
            self._epoch += 1
            self.invalidate(touched)

    def invalidate(self, keys: Iterable[str]) -> None:
        """Forget ``keys`` (after a write, or a rewrap that changed them)."""
        self._epoch += 1
        for key in keys:
            entry = self._data.pop(key, None)
            if entry is not None:
                self._bytes -= entry[1]
        if self._on_forget is not None:
            self._on_forget()

    def invalidate_prefix(self, prefix: str) -> None:
        """Forget every key under ``prefix`` (a disabled mount)."""
        self.invalidate([k for k in self._data if k.startswith(prefix)])

    def apply_changes(self, changes: Changes) -> None:
        """Forget what another process committed; empty and bypass the cache while the feed is down."""
        if not changes.watching:
            self._bypass = True
            self.clear()
        elif changes.everything:
            self.clear()
            self._bypass = False
        else:
            self.invalidate(changes.keys)
            for prefix in changes.prefixes:
                self.invalidate_prefix(prefix)

    def clear(self) -> None:
        self._epoch += 1
        self._data.clear()
        self._bytes = 0
        if self._on_forget is not None:
            self._on_forget()
