"""Exclusive named locks across every process sharing one database: who runs the timers.

Why: some work must happen once, not once per server replica — revoking an
expired lease drops a database user, a scheduled rotation writes one new
version. A backend that several processes share (PostgreSQL) offers
:class:`ExclusiveLocking`: :meth:`~ExclusiveLocking.try_hold` takes a named
lock on a connection of its own (a session-level advisory lock), held until
:meth:`HeldLock.release` or until that connection dies — a replica that is
killed loses the lock at once and another replica takes over on its next try.

A backend one server owns alone (SQLite) lacks the capability; its one
server is always the holder. Like :mod:`kustos.store.changes`, this is an
optional capability beside :class:`~kustos.store.base.StorageBackend`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["ExclusiveLocking", "HeldLock"]


class HeldLock(Protocol):
    """A lock this process holds until :meth:`release` (or until its connection is lost)."""

    async def check(self) -> bool:
        """Whether the lock is still held (its connection answers); ``False`` once lost."""
        ...

    async def release(self) -> None:
        """Give the lock up (idempotent; never raises)."""
        ...


@runtime_checkable
class ExclusiveLocking(Protocol):
    """A backend shared by several processes that can grant one of them a named lock."""

    async def try_hold(self, name: str) -> HeldLock | None:
        """Take the lock ``name`` if no other process holds it; ``None`` if one does.

        Raises :class:`~kustos.errors.StorageError` when the database cannot be reached.
        """
        ...
