"""Durable timers: work due at a time (lease expiry, scheduled rotation), run once, across restarts.

Why: a lease must be revoked at its end even if the server was down at that
moment, and with several replicas on one database it must be revoked once,
not once per replica. So timers live in storage, not in memory: a timer is
the key ``sys/timers/<due, ms, 15 digits>/<kind>/<ref>`` with an empty
value. Keys sort by due time (the keyspace is ordered), so "what is due" is
a range scan from the start that stops at the first future key.

Whoever owns the work writes the timer in the same transaction as the record
it is about (a lease, a static role, a rotation rule) and deletes it with
the record. One :class:`Timers` runner per server process fires due timers:
it calls the handler registered for the timer's ``kind`` with its ``ref``;
the handler does the work and answers ``None`` (done) or the time it is due
again (a renewed lease, the next rotation). A handler that fails is retried
with a growing delay (2 s, 4 s, ... up to 5 minutes); nothing is lost.
Handlers must be idempotent and check the record's current state (a timer
may fire late, twice, or after its record changed).

Only one process runs timers at a time: on a backend with
:class:`~kustos.store.locking.ExclusiveLocking` (PostgreSQL) the runner
holds the lock ``kustos:timers`` while it works and retries to take it every
few seconds otherwise, so when the holder dies another replica takes over.
A backend without it (SQLite) has one server, which always runs them. On
start the runner fires everything already due at once: a lease that ended
while the server was down is revoked within a second of the start.

The runner sleeps until the earliest timer it knows of; a timer scheduled
by this process tells it its due time (it may not be committed yet when the
runner looks, so the runner looks again at that time), one scheduled by another
replica wakes it through the storage change feed (:meth:`apply_changes`) or,
without one, at the next ``poll`` interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Final

from kustos.errors import KustosError, StorageError
from kustos.server.times import Clock
from kustos.store.base import StorageBackend, Transaction
from kustos.store.changes import Changes
from kustos.store.locking import ExclusiveLocking, HeldLock

__all__ = [
    "LOCK_NAME",
    "TIMERS_PREFIX",
    "TimerHandler",
    "Timers",
    "parse_timer_key",
    "timer_key",
]

TIMERS_PREFIX: Final = "sys/timers/"
LOCK_NAME: Final = "kustos:timers"
_KIND: Final = re.compile(r"[a-z][a-z0-9-]{0,31}")
_BATCH: Final = 256
_RETRY_FIRST: Final = 2.0
_RETRY_MAX: Final = 300.0

TimerHandler = Callable[[str], Awaitable[float | None]]
"""Called with the timer's ``ref``; returns ``None`` (done) or when it is due again."""

_log = logging.getLogger("kustos.server.timers")


def timer_key(due: float, kind: str, ref: str) -> str:
    """The storage key of a timer (``ref`` may contain ``/``)."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"invalid timer kind {kind!r}")
    return f"{TIMERS_PREFIX}{max(0, round(due * 1000)):015d}/{kind}/{ref}"


def parse_timer_key(key: str) -> tuple[float, str, str] | None:
    """``(due, kind, ref)`` of a timer key; ``None`` for a key that is not one."""
    if not key.startswith(TIMERS_PREFIX):
        return None
    stamp, _, rest = key[len(TIMERS_PREFIX) :].partition("/")
    kind, _, ref = rest.partition("/")
    if len(stamp) != 15 or not stamp.isdigit() or not _KIND.fullmatch(kind) or not ref:
        return None
    return int(stamp) / 1000.0, kind, ref


class Timers:
    """Schedules timers in storage and runs the due ones (in one process among replicas)."""

    def __init__(
        self,
        *,
        storage: StorageBackend,
        clock: Clock,
        poll: float = 5.0,
        lock_retry: float = 5.0,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        """``poll``: the longest sleep when other processes may add timers unannounced;
        ``ready``: whether handlers can work now (the server is unsealed), checked before each round."""
        self._storage = storage
        self._ready = ready
        self._clock = clock
        self._poll = poll
        self._lock_retry = lock_retry
        self._handlers: dict[str, TimerHandler] = {}
        self._failures: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._feed = False
        self._hint: float | None = None
        self.fired = 0
        """Timers handled since start (for tests and metrics)."""
        self.leader = False
        """Whether this process runs the timers right now."""

    def register(self, kind: str, handler: TimerHandler) -> None:
        """Route timers of ``kind`` to ``handler`` (once per kind, at startup)."""
        if not _KIND.fullmatch(kind) or kind in self._handlers:
            raise ValueError(f"invalid or duplicate timer kind {kind!r}")
        self._handlers[kind] = handler

    # -- scheduling (inside the caller's transaction) ------------------------------------

    async def schedule(self, tx: Transaction, due: float, kind: str, ref: str) -> None:
        """Add a timer in ``tx``; the runner looks for it at ``due`` (harmless if ``tx`` rolls back)."""
        await tx.put(timer_key(due, kind, ref), b"")
        if self._hint is None or due < self._hint:
            self._hint = due
        self.wake()

    @staticmethod
    async def cancel(tx: Transaction, due: float, kind: str, ref: str) -> None:
        """Remove the timer ``(due, kind, ref)`` in ``tx`` (no error if it is gone)."""
        await tx.delete(timer_key(due, kind, ref))

    def wake(self) -> None:
        """Make the runner look for due timers now."""
        self._wake.set()

    def apply_changes(self, changes: Changes) -> None:
        """Follow the storage change feed: a timer another replica wrote wakes the runner."""
        self._feed = changes.watching
        if changes.everything or any(k.startswith(TIMERS_PREFIX) for k in changes.keys):
            self._wake.set()

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the runner task (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kustos-timers")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.leader = False

    async def _run(self) -> None:
        while True:
            held: HeldLock | None = None
            try:
                if isinstance(self._storage, ExclusiveLocking) and self._storage.name != "sqlite":
                    held = await self._storage.try_hold(LOCK_NAME)
                    if held is None:
                        await self._sleep(self._lock_retry)
                        continue
                self.leader = True
                await self._lead(held)
            except StorageError as exc:
                _log.warning("timers: storage unavailable, retrying", extra={"error": str(exc)})
                await asyncio.sleep(self._lock_retry)
            finally:
                self.leader = False
                if held is not None:
                    await held.release()

    async def _lead(self, held: HeldLock | None) -> None:
        shared = held is not None
        while True:
            self._wake.clear()  # before the scan: a wake during it is not lost
            if not self._ready():
                await self._sleep(1.0)
                continue
            hint, self._hint = self._hint, None
            now = self._clock()
            if hint is not None and hint <= now:
                # scheduled as already due, maybe not committed yet when the scan below runs:
                # look once more a second later
                self._hint = now + 1.0
            next_due = await self.run_due()
            candidates = [due for due in (next_due, self._hint, hint) if due is not None]
            now = self._clock()
            timeout = max(0.05, min(candidates) - now) if candidates else None
            if shared:
                limit = self._poll * (6 if self._feed else 1)
                timeout = limit if timeout is None else min(timeout, limit)
            await self._sleep(timeout)
            if held is not None and not await held.check():
                _log.warning("timers: lost the lock; another replica may take over")
                return

    async def _sleep(self, timeout: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def run_due(self) -> float | None:
        """Fire every timer due now; return when the next one is due (``None``: none is)."""
        while True:
            now = self._clock()
            due_keys: list[str] = []
            next_due: float | None = None
            rows = self._storage.scan(TIMERS_PREFIX)
            try:
                async for key, _ in rows:
                    parsed = parse_timer_key(key)
                    if parsed is None:
                        due_keys.append(key)  # not a timer: removed by _fire
                        continue
                    if parsed[0] > now:
                        next_due = parsed[0]
                        break
                    due_keys.append(key)
                    if len(due_keys) >= _BATCH:
                        break
            finally:
                close = getattr(rows, "aclose", None)
                if close is not None:
                    await close()
            for key in due_keys:
                await self._fire(key)
            if len(due_keys) < _BATCH:
                return next_due

    async def _fire(self, key: str) -> None:
        parsed = parse_timer_key(key)
        again: float | None = None
        if parsed is not None:
            _, kind, ref = parsed
            handler = self._handlers.get(kind)
            if handler is None:
                _log.warning("timers: no handler for a timer; dropped", extra={"kind": kind})
            else:
                slot = f"{kind}/{ref}"
                try:
                    again = await handler(ref)
                    self._failures.pop(slot, None)
                except Exception as exc:
                    failures = self._failures.get(slot, 0) + 1
                    self._failures[slot] = failures
                    delay = min(_RETRY_MAX, _RETRY_FIRST * 2 ** (failures - 1))
                    again = self._clock() + delay
                    _log.warning(
                        "timers: a handler failed; retrying later",
                        extra={
                            "kind": kind,
                            "error": str(exc)
                            if isinstance(exc, KustosError)
                            else type(exc).__name__,
                            "retry_in": delay,
                        },
                    )
        async with self._storage.transaction() as tx:
            await tx.delete(key)
            if again is not None and parsed is not None:
                await tx.put(timer_key(again, parsed[1], parsed[2]), b"")
        self.fired += 1
