"""Group commit: concurrent transactions of one process share one durable commit.

Why: making a commit durable costs an ``fdatasync`` of SQLite's WAL, or a
PostgreSQL ``COMMIT`` that waits for its WAL flush (and, when it notifies,
holds the database's notification lock until then). That is milliseconds,
while the work of one KV write is a fraction of one. Paying it once per
*group* of concurrent transactions, instead of once per transaction, is what
lets writes scale with the number of writers. Every acknowledged write is
still durable: a transaction's ``async with`` block exits only after the
group it belongs to has committed.

How: :class:`GroupCommitter` runs the transactions of one process one at a
time (a FIFO slot) inside one open database transaction, the *group*, that a
backend begins (:class:`Physical`). A transaction (:class:`_Member`) buffers
its puts and deletes in memory; its reads see its own buffered writes and
everything earlier members of the group wrote. When its block ends, its
writes are applied to the group in one statement. If it raises instead,
they are dropped; a transaction that had to apply writes early (it listed or
deleted a prefix after writing) does so under a savepoint, rolled back then.

The group commits when the member leaving the slot sees no other transaction
waiting for it, or the group has ``max_members`` members, or is older than
``max_delay`` seconds. Alone, a transaction commits at once (no added
latency); under load, the transactions that queued during one commit form
the next group. Notifications (keys changed, announcements) of every member
go out with the group's commit.

Lanes (PostgreSQL): where one round trip to the database is what a
transaction waits for, one group at a time leaves the process idle. With
``lanes`` > 1, several groups run at once, each on its own connection. A
transaction joins a lane only when it first locks a key
(``get(key, for_update=True)``) or, at its end, when it wrote something; the
lane is chosen by that key, so transactions on the same key meet in the same
lane and run one after another there. Before joining, its plain reads see
committed data (READ COMMITTED, as a transaction of its own would). A
transaction that locks keys of two lanes waits on the database's lock, held
until the other lane's group commits.
While a transaction waits for its lane's slot, the key it will lock is
known: the running transaction's locked reads pass the keys of those waiting
(``ahead``) to the backend, which may lock and read them in the same round
trip (PostgreSQL does; see its backend).

Commit hook: a transaction that changed something awaits the caller's
:data:`~kustos.store.base.COMMIT_HOOK` when its block ends, before its writes
join the group; if the hook raises, the writes are dropped (as if the block
had raised) and the exception propagates.

Failures: a database error inside a group (a statement, a savepoint, the
commit) rolls the whole group back and every member that had ended raises
:class:`~kustos.errors.StorageError`: none of them was acknowledged, so a
client retries. Locks taken with ``for_update`` are held until the group
ends; between two processes whose groups wait for each other's locks
PostgreSQL detects the deadlock and fails one group, which then rolls back
as above.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from kustos.errors import StorageError
from kustos.store.base import run_commit_hook
from kustos.store.changes import Announcement

__all__ = ["GroupCommitter", "GroupOutcome", "Physical", "Reads"]

_T = TypeVar("_T")

DEFAULT_MAX_MEMBERS: Final = 128
DEFAULT_MAX_DELAY: Final = 0.02


@dataclass
class GroupOutcome:
    """What the members of one group changed and announced (sent with its commit)."""

    keys: set[str] = field(default_factory=set)
    prefixes: list[str] = field(default_factory=list)
    announcements: list[Announcement] = field(default_factory=list)
    members: int = 0


class Physical(Protocol):
    """One open database transaction of a backend, shared by the members of a group."""

    async def get(self, key: str, *, lock: bool, ahead: Sequence[str] = ()) -> bytes | None:
        """Read ``key`` (seeing the group's writes); with ``lock``, lock it first until the group ends.

        ``ahead``: keys that transactions waiting for this lane will lock next
        (a hint: a backend may lock and read them in the same round trip).
        """
        ...

    async def apply(self, writes: Mapping[str, bytes | None]) -> None:
        """Write (``bytes``) or delete (``None``) each key."""
        ...

    async def delete_prefix(self, prefix: str) -> int: ...

    async def list(self, prefix: str) -> list[str]: ...

    async def savepoint(self) -> None: ...

    async def release_savepoint(self) -> None: ...

    async def rollback_to_savepoint(self) -> None:
        """Undo everything since :meth:`savepoint` and release it."""
        ...

    async def commit(self, outcome: GroupOutcome) -> None:
        """Make the group durable (and notify); raise if it is not."""
        ...

    async def rollback(self) -> None:
        """Abandon the group; never raises for a connection that is already gone."""
        ...


class _Group:
    __slots__ = ("done", "failure", "outcome", "physical", "started")

    def __init__(self, physical: Physical, started: float) -> None:
        self.physical = physical
        self.started = started
        self.outcome = GroupOutcome()
        self.failure: BaseException | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class _Lane:
    """A FIFO slot and the group open in it; one lane runs one group at a time."""

    def __init__(self, committer: GroupCommitter) -> None:
        self._committer = committer
        self.busy = False
        self.queue: collections.deque[asyncio.Future[None]] = collections.deque()
        self.locking: dict[asyncio.Future[None], str] = {}  # waiter -> the key it will lock
        self.group: _Group | None = None
        self.ending: set[asyncio.Task[None]] = set()

    async def acquire(self, locking: str | None = None) -> None:
        """Wait for the slot; ``locking``: the key the transaction will lock first."""
        if not self.busy and not self.queue:
            self.busy = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.append(waiter)
        if locking is not None:
            self.locking[waiter] = locking
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.pass_slot()  # handed the slot just as this wait was cancelled
            else:
                with contextlib.suppress(ValueError):
                    self.queue.remove(waiter)
            raise
        finally:
            self.locking.pop(waiter, None)

    def ahead(self, limit: int) -> list[str]:
        """The keys the next (up to ``limit``) waiting transactions will lock, in their order."""
        keys: list[str] = []
        if limit > 0 and self.locking:
            for waiter in self.queue:
                key = self.locking.get(waiter)
                if key is not None and not waiter.done():
                    keys.append(key)
                    if len(keys) >= limit:
                        break
        return keys

    def _waiting(self) -> bool:
        return any(not waiter.done() for waiter in self.queue)

    async def join(self) -> _Group:
        """The open group, or a new one; call with the slot held."""
        group = self.group
        if group is None:
            physical = await self._committer.begin()
            group = self.group = _Group(physical, asyncio.get_running_loop().time())
        return group

    def pass_slot(self) -> None:
        """Hand the slot to the next waiting transaction, or end the open group first when it is due."""
        group = self.group
        committer = self._committer
        if group is not None and (
            group.failure is not None
            or not self._waiting()
            or group.outcome.members >= committer.max_members
            or asyncio.get_running_loop().time() - group.started >= committer.max_delay
        ):
            self.group = None
            task = asyncio.get_running_loop().create_task(self._end(group))
            self.ending.add(task)
            task.add_done_callback(self.ending.discard)
            return  # _end passes the slot on when the group is over
        while self.queue:
            waiter = self.queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.busy = False

    async def _end(self, group: _Group) -> None:
        """Commit (or roll back) ``group``, then wake its members and pass the slot on."""
        try:
            if group.failure is None and group.outcome.members:
                try:
                    await group.physical.commit(group.outcome)
                except BaseException as exc:
                    group.failure = exc
                    with contextlib.suppress(Exception):
                        await group.physical.rollback()
                else:
                    self._committer.groups += 1
                    self._committer.members += group.outcome.members
            else:
                with contextlib.suppress(Exception):
                    await group.physical.rollback()
        finally:
            if not group.done.done():
                group.done.set_result(None)
            self.pass_slot()

    async def close(self) -> None:
        await self.acquire()
        try:
            while self.ending:
                await asyncio.gather(*self.ending, return_exceptions=True)
        finally:
            self.pass_slot()


class Reads(Protocol):
    """Reads of committed data outside any group (for a transaction not yet in a lane)."""

    async def get(self, key: str) -> bytes | None: ...

    async def list(self, prefix: str) -> list[str]: ...


class GroupCommitter:
    """Runs one process's transactions in groups that commit together (see the module docstring).

    ``backend`` names the backend in error messages; ``begin`` opens a new
    database transaction for a group; ``check_open`` raises when the backend
    is not open. With ``lanes`` > 1 (PostgreSQL),
    several groups run at once, each on its own connection: a transaction
    joins a lane when it first locks a key (``get(key, for_update=True)``) or
    writes, chosen by that key, so transactions on one key share a lane and
    wait for each other in this process; until then it reads committed data
    through ``reads``.
    """

    def __init__(
        self,
        *,
        backend: str,
        begin: Callable[[], Awaitable[Physical]],
        max_members: int = DEFAULT_MAX_MEMBERS,
        max_delay: float = DEFAULT_MAX_DELAY,
        lanes: int = 1,
        reads: Reads | None = None,
        check_open: Callable[[], object] = lambda: None,
    ) -> None:
        if max_members < 1:
            raise ValueError("max_members must be at least 1")
        if lanes < 1 or (lanes > 1 and reads is None):
            raise ValueError("need lanes >= 1, and reads for more than one lane")
        self.backend = backend
        self.begin = begin
        self.max_members = max_members
        self.max_delay = max_delay
        self.reads = reads
        self._check_open = check_open
        self._lanes = [_Lane(self) for _ in range(lanes)]
        self.groups = 0
        """Groups committed so far (with at least one member)."""
        self.members = 0
        """Transactions committed so far; ``members / groups`` is the mean group size."""

    def lane_for(self, key: str) -> _Lane:
        lanes = self._lanes
        return lanes[0] if len(lanes) == 1 else lanes[hash(key) % len(lanes)]

    async def close(self) -> None:
        """Wait until no group is open or committing."""
        for lane in self._lanes:
            await lane.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Member]:
        """One transaction, run in a group; exits once that group is durable."""
        self._check_open()  # raises StorageError when the backend is not open
        member = _Member(self)
        if len(self._lanes) == 1:
            await member.bind("")
        try:
            try:
                yield member
            except BaseException:
                member.active = False
                await member.undo()
                raise
            member.active = False
            if member.changed:
                try:  # the caller's commit hook (kustos.store.base.COMMIT_HOOK) may refuse
                    await run_commit_hook()
                except BaseException:
                    await member.undo()
                    raise
            await member.finish()
        finally:
            if member.lane is not None:
                member.lane.pass_slot()
        group = member.group
        if group is None:
            return  # it read and wrote nothing: nothing to commit
        await asyncio.shield(group.done)
        if group.failure is not None:
            failure = group.failure
            message = (
                str(failure)
                if isinstance(failure, StorageError)
                else f"{self.backend}: commit failed ({type(failure).__name__})"
            )
            raise StorageError(message) from failure


class _Member:
    """One transaction inside a group: the :class:`~kustos.store.base.Transaction` callers get."""

    __slots__ = (
        "_announcements",
        "_committer",
        "_keys",
        "_locked",
        "_prefixes",
        "_savepoint",
        "_writes",
        "active",
        "group",
        "lane",
    )

    def __init__(self, committer: GroupCommitter) -> None:
        self._committer = committer
        self.lane: _Lane | None = None
        self.group: _Group | None = None
        self.active = True
        self._writes: dict[str, bytes | None] = {}
        self._keys: set[str] = set()
        self._prefixes: list[str] = []
        self._announcements: list[Announcement] = []
        self._savepoint = False
        self._locked: set[str] = set()

    async def bind(self, key: str, *, locking: bool = False) -> _Group:
        """Join the lane ``key`` belongs to (waiting for its slot) and its group.

        ``locking``: the transaction will lock ``key`` first (a hint for the
        group running meanwhile, which may lock and read it ahead).
        """
        if self.group is not None:
            return self.group
        lane = self._committer.lane_for(key)
        await lane.acquire(key if locking else None)
        self.lane = lane
        try:
            self.group = await lane.join()
        except BaseException:
            self.lane = None
            lane.pass_slot()
            raise
        return self.group

    def _check(self) -> None:
        if not self.active:
            raise StorageError(f"{self._committer.backend}: the transaction has already ended")

    async def _db(self, call: Awaitable[_T]) -> _T:
        """Run one database call in this transaction's group; if it fails, the group fails."""
        try:
            return await call
        except BaseException as exc:
            if self.group is not None and self.group.failure is None:
                self.group.failure = exc
            raise

    async def _flush(self, group: _Group) -> None:
        """Apply the buffered writes now, under a savepoint (so raising later can undo them)."""
        physical = group.physical
        if not self._savepoint:
            await self._db(physical.savepoint())
            self._savepoint = True
        if self._writes:
            await self._db(physical.apply(self._writes))
            self._keys.update(self._writes)
            self._writes = {}

    # -- Transaction ------------------------------------------------------------------

    async def get(self, key: str, *, for_update: bool = False) -> bytes | None:
        """Read ``key``; with ``for_update``, lock it until the group ends."""
        self._check()
        group = self.group
        if group is None and not for_update:
            if key in self._writes:
                return self._writes[key]
            reads = self._committer.reads
            assert reads is not None  # noqa: S101 - unbound members exist only with several lanes
            return await reads.get(key)
        if group is None:
            group = await self.bind(key, locking=True)
        lock = for_update and key not in self._locked
        ahead: Sequence[str] = ()
        if lock:
            self._locked.add(key)
            lane = self.lane
            if lane is not None and lane.locking:
                ahead = lane.ahead(self._committer.max_members - group.outcome.members - 1)
        if key in self._writes:
            if lock:
                await self._db(group.physical.get(key, lock=True, ahead=ahead))
            return self._writes[key]
        return await self._db(group.physical.get(key, lock=lock, ahead=ahead))

    async def put(self, key: str, value: bytes) -> None:
        """Insert or replace the value at ``key`` (applied when the transaction ends)."""
        self._check()
        self._writes[key] = bytes(value)

    async def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it is absent)."""
        self._check()
        self._writes[key] = None

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; return how many."""
        self._check()
        group = self.group or await self.bind(next(iter(self._writes), prefix))
        await self._flush(group)
        deleted = await self._db(group.physical.delete_prefix(prefix))
        if deleted:
            self._prefixes.append(prefix)
        return deleted

    async def list(self, prefix: str) -> list[str]:
        """Direct children of ``prefix``, seeing this transaction's writes."""
        self._check()
        buffered = any(key.startswith(prefix) for key in self._writes)
        group = self.group
        if group is None and not buffered:
            reads = self._committer.reads
            assert reads is not None  # noqa: S101 - unbound members exist only with several lanes
            return await reads.list(prefix)
        if group is None:
            group = await self.bind(next(iter(self._writes)))
        if buffered:
            await self._flush(group)
        return await self._db(group.physical.list(prefix))

    def announce(self, topic: str, document: Mapping[str, Any]) -> None:
        """Send ``document`` under ``topic`` with the group's commit (nothing if this rolls back)."""
        self._check()
        self._announcements.append(Announcement(topic=topic, document=dict(document)))

    # -- the end ------------------------------------------------------------------------

    @property
    def changed(self) -> bool:
        """Whether this transaction wrote or deleted anything."""
        return bool(self._writes or self._keys or self._prefixes)

    async def finish(self) -> None:
        """Apply what is buffered and join the group's outcome (called once the block ended)."""
        group = self.group
        if group is None:
            if not self._writes and not self._announcements:
                return  # read-only: nothing to commit
            first = next(iter(self._writes)) if self._writes else self._announcements[0].topic
            group = await self.bind(first)
        if group.failure is not None:
            raise StorageError(f"{self._committer.backend}: the transaction's group failed")
        physical = group.physical
        if self._writes:
            await self._db(physical.apply(self._writes))
            self._keys.update(self._writes)
            self._writes = {}
        if self._savepoint:
            await self._db(physical.release_savepoint())
        outcome = group.outcome
        outcome.members += 1
        outcome.keys.update(self._keys)
        outcome.prefixes.extend(self._prefixes)
        outcome.announcements.extend(self._announcements)

    async def undo(self) -> None:
        """Drop this transaction's writes (the block raised)."""
        self._writes = {}
        group = self.group
        if self._savepoint and group is not None and group.failure is None:
            with contextlib.suppress(BaseException):
                await self._db(group.physical.rollback_to_savepoint())
