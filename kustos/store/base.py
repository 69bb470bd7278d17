"""The ``StorageBackend`` protocol: an ordered key-value store with transactions.

Keys are ``/``-separated strings (``kv/<mount-uuid>/data/app/db/3``); values
are opaque bytes. ``list(prefix)`` answers like Vault's physical backends: the
direct children of ``prefix`` (which ends in ``/`` or is empty), with a
trailing ``/`` on a child that has entries below it (a "folder"), sorted.

Durability: when a transaction's ``async with`` block exits without an error,
the data is on disk (SQLite: WAL + ``synchronous=FULL``; PostgreSQL: commit).
Concurrency: ``get(key, for_update=True)`` inside a transaction locks ``key``
(even when it does not exist yet) until the transaction ends, across processes
sharing one database, so read-modify-write (check-and-set) is safe.

Group commit: both backends run concurrent transactions of one process one
after another inside one database transaction and make them durable together
(one ``fsync`` or one ``COMMIT`` for the group, :mod:`kustos.store._grouping`).
Each transaction still commits or rolls back on its own; its ``async with``
block exits only once the group is durable, and if the group's commit fails,
every transaction in it raises. A lock taken with ``for_update`` is held until
the group commits.

Commit hook: a transaction that changed something awaits the callable in
:data:`COMMIT_HOOK` (when the caller's context set one) after its block
ended and before it commits; if the hook raises, the transaction rolls back
and the exception propagates. The server audits a write's response there,
so a response that cannot be audited leaves nothing committed
(:mod:`kustos.server.committing`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import Any, Final, Protocol

__all__ = ["COMMIT_HOOK", "StorageBackend", "Transaction", "run_commit_hook"]

COMMIT_HOOK: Final[ContextVar[Callable[[], Awaitable[None]] | None]] = ContextVar(
    "kustos_commit_hook", default=None
)
"""What a transaction that changed something awaits just before it commits (see the module docstring)."""


async def run_commit_hook() -> None:
    """Await the caller's commit hook, if any (backends call this before COMMIT)."""
    hook = COMMIT_HOOK.get()
    if hook is not None:
        await hook()


class Transaction(Protocol):
    """Reads and writes that commit together, or not at all."""

    async def get(self, key: str, *, for_update: bool = False) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; return how many."""
        ...

    async def list(self, prefix: str) -> list[str]: ...

    def announce(self, topic: str, document: Mapping[str, Any]) -> None:
        """Tell every process watching this database, once this transaction commits.

        ``document`` is a small JSON object of names and numbers (never a
        value); see :mod:`kustos.store.changes`. Nothing is sent if the
        transaction rolls back.
        """
        ...


class StorageBackend(Protocol):
    """An ordered key-value store; see the module docstring for the contract."""

    @property
    def name(self) -> str:
        """``sqlite`` or ``postgresql``."""
        ...

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""
        ...

    async def close(self) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def list(
        self, prefix: str, *, after: str | None = None, limit: int | None = None
    ) -> list[str]:
        """Direct children of ``prefix`` (folders end in ``/``), sorted.

        ``after``: only names that sort after it (it need not exist);
        ``limit``: at most that many (``None`` or less than 1: all). A page
        of a big folder costs one index read per name on the page.
        """
        ...

    def scan(self, prefix: str) -> AsyncIterator[tuple[str, bytes]]:
        """Every (key, value) whose key starts with ``prefix``, in key order (for rewrap, export).

        Read in batches: each batch is consistent, the whole scan is not a snapshot.
        """
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Commit when the ``async with`` block exits normally, roll back on any exception.

        Do not nest transactions on one backend (SQLite serializes writers, so
        an inner transaction would wait for the outer one forever).
        """
        ...

    async def schema_version(self) -> int: ...

    @property
    def commit_stats(self) -> tuple[int, int]:
        """``(commits, transactions)`` so far: durable commits, and the transactions they carried."""
        ...
