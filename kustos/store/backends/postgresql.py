"""The shared storage backend: PostgreSQL through psycopg 3 and a connection pool.

Use it when several server processes serve one data set: they all point at
the same database. A write is durable when its transaction commits (with the
server's default ``synchronous_commit=on``).

Check-and-set across processes: ``get(key, for_update=True)`` takes a
transaction-scoped advisory lock on a 64-bit hash of the key *before* reading
it, so it serializes writers of that key even when no row exists yet (a row
lock could not). The lock is released at commit or rollback. A hash collision
only makes two unrelated keys wait for each other, never corrupts anything.

Point reads (:meth:`PostgresBackend.get`, the hot path of every KV read) run
on *reader* connections: up to ``pool_max // 2`` connections taken from the
pool once and kept, each with one reused binary cursor and a prepared
statement; when all are busy a read waits for the next one free. That skips
the pool's check-out/check-in and the per-query cursor set-up, about 40% of
the client CPU a read costs. A reader whose
query fails (or is cancelled) goes back to the pool, which discards it if it
is broken; with ``pool_max`` 1 every read uses the pool.

Writes use group commit (:mod:`kustos.store._grouping`): this process's
transactions run one after another in one database transaction on one pooled
connection (in up to 2 *lanes* at once, and at most ``pool_max - pool_max // 2 - 1``, each
with its own group and connection; transactions on one key share a lane) (``BEGIN`` ... ``COMMIT``), and share its commit and its
notification. That matters twice here: a ``COMMIT`` waits for its WAL flush,
and a transaction that notifies holds the database's notification lock from
its pre-commit until the commit is done, so notifying commits of the whole
cluster run one at a time. A group pays for that once. Inside a group,
statements whose result is not needed are queued and sent with the next one
that is (see :class:`_PostgresGroup`): a KV write costs at most one round
trip, and usually none of its own, because the round trip of a locked read
also locks and reads, where it can without waiting, the keys the
transactions queued behind it will lock (``ahead``), and the group answers
reads of the keys it holds locked from memory.

Change notifications (:meth:`PostgresBackend.watch_changes`): a group that
put or deleted keys, or announced something (:meth:`Transaction.announce`),
sends ``pg_notify('kustos_changes', payload)`` in the same round trip as its
``COMMIT`` (one simple query: if a notification fails the ``COMMIT`` is not run), so the notification is delivered only if it commits, after its
data is visible. The payload is JSON ``{"o": origin, "k": [keys], "p":
[prefixes], "a": [[topic, document], ...]}``; what does not fit one payload
(~7,900 bytes; PostgreSQL's limit is 8,000) is split over several
notifications of the same commit, and an item too large for any is replaced
by ``*`` ("forget everything; announcements were missed"). ``origin`` is
random per backend object, so a process knows its own commits
(``Changes.local``). The first subscriber starts one dedicated LISTEN
connection; a notification reaches every subscriber (this process's own
commits too). Every
``heartbeat`` seconds without a notification the listener runs ``SELECT 1``
(bounded by ``connect_timeout``), so a silently dead connection is noticed.
When the connection fails, subscribers get ``watching=False`` at once (drop
and bypass caches) and the listener reconnects with backoff; once LISTEN is
back they get ``everything=True, watching=True``.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Final, TypeAlias

import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from kustos.errors import StorageError
from kustos.store import migrations
from kustos.store._grouping import GroupCommitter, GroupOutcome
from kustos.store._keyspace import child_name, children_params, list_children_sql, prefix_end
from kustos.store.base import Transaction
from kustos.store.changes import Announcement, ChangeCallback, Changes, Unsubscribe

__all__ = [
    "CHANGES_CHANNEL",
    "LISTENER_APPLICATION_NAME",
    "LOCK_APPLICATION_NAME",
    "PostgresBackend",
]

_Pool: TypeAlias = "psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]]"
_Reader: TypeAlias = "tuple[psycopg.AsyncConnection[Any], psycopg.AsyncCursor[Any]]"

_SCAN_BATCH: Final = 256
_SQL_GET: Final = "SELECT value FROM entries WHERE key = %s"
_MIGRATION_LOCK: Final = "kustos:schema_migrations"
CHANGES_CHANNEL: Final = "kustos_changes"
"""The NOTIFY channel every committed write announces its keys on."""
LISTENER_APPLICATION_NAME: Final = "kustos-listener"
"""``application_name`` of the LISTEN connection (to spot it in ``pg_stat_activity``)."""
LOCK_APPLICATION_NAME: Final = "kustos-lock"
"""``application_name`` of a connection that holds an exclusive lock (:meth:`PostgresBackend.try_hold`)."""
_FLUSH_ALL: Final = "*"
_MAX_PAYLOAD: Final = 7_900  # bytes; PostgreSQL refuses payloads of 8,000 and more
_MAX_LANES: Final = 2
"""Groups at once. With keys locked ahead a group's writes cost no round trip of their own, so
fewer, larger groups beat more of them (32 writers: 2 lanes wrote 20-190% more than 4, with
less CPU per write, in 4 of 4 alternating runs on a busy 2-core host)."""
_RETRY_FIRST: Final = 0.05
_RETRY_MAX: Final = 2.0

_log = logging.getLogger("kustos.store.postgresql")


@contextlib.contextmanager
def _errors(operation: str) -> Iterator[None]:
    """Turn psycopg failures into StorageError whose message never carries a value.

    Connection-level errors keep libpq's first line (hosts and ports, never
    data); every other error is named by its class and SQLSTATE only.
    """
    try:
        yield
    except psycopg_pool.PoolTimeout as exc:
        raise StorageError(
            f"postgresql: {operation} failed: no database connection available"
        ) from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"postgresql: {operation} failed: {first_line}") from exc
    except psycopg.Error as exc:
        state = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
        raise StorageError(f"postgresql: {operation} failed: {type(exc).__name__}{state}") from exc


def _range(prefix: str) -> tuple[str, tuple[str, ...]]:
    end = prefix_end(prefix)
    if end is None:
        return "key >= %s", (prefix,)
    return "key >= %s AND key < %s", (prefix, end)


def _describe(conninfo: str) -> str:
    """Where a conninfo points, without its password (for repr and logs)."""
    try:
        parts = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "<unparsable conninfo>"
    host = parts.get("host", "localhost")
    port = parts.get("port", "5432")
    dbname = parts.get("dbname", parts.get("user", ""))
    return f"{host}:{port}/{dbname}"


class PostgresBackend:
    """A :class:`~kustos.store.base.StorageBackend` on a PostgreSQL database.

    ``conninfo`` is a libpq URL or key/value string. The pool keeps between
    ``pool_min`` and ``pool_max`` connections; ``connect_timeout`` (seconds)
    bounds :meth:`open`, the wait for a free connection and the listener's
    heartbeat query; ``heartbeat`` (seconds) is how long the listener waits
    for a notification before checking its connection.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        pool_min: int = 1,
        pool_max: int = 10,
        connect_timeout: float = 10.0,
        heartbeat: float = 5.0,
    ) -> None:
        if pool_min < 0 or pool_max < max(pool_min, 1):
            raise ValueError("need 0 <= pool_min <= pool_max and pool_max >= 1")
        self._conninfo = conninfo
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._timeout = connect_timeout
        self._pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._reader_limit = pool_max // 2
        self._readers = 0  # reader connections out of the pool (idle or busy)
        self._idle_readers: list[_Reader] = []
        self._reader_waiters: collections.deque[asyncio.Future[_Reader | None]] = (
            collections.deque()
        )
        self._heartbeat = heartbeat
        self._origin = uuid.uuid4().hex[:16]
        self._committer = GroupCommitter(
            backend="postgresql",
            begin=self._begin_group,
            lanes=min(_MAX_LANES, max(1, pool_max - self._reader_limit - 1)),
            reads=self,
            check_open=self._require_pool,
        )
        self._subscribers: list[ChangeCallback] = []
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    def __repr__(self) -> str:
        return f"PostgresBackend({_describe(self._conninfo)})"

    @property
    def name(self) -> str:
        """Always ``postgresql``."""
        return "postgresql"

    async def __aenter__(self) -> PostgresBackend:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Fill the pool and apply pending migrations (serialized across processes)."""
        if self._pool is not None:
            return
        pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]] = (
            psycopg_pool.AsyncConnectionPool(
                self._conninfo,
                min_size=self._pool_min,
                max_size=self._pool_max,
                kwargs={"autocommit": True},
                open=False,
                timeout=self._timeout,
                name="kustos-store",
            )
        )
        try:
            with _errors("open"):
                await pool.open(wait=True, timeout=self._timeout)
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_MIGRATION_LOCK,)
                    )
                    await conn.execute(migrations.bookkeeping_ddl("postgresql"))
                    for step in migrations.pending_migrations(await self._version(conn)):
                        for statement in step.statements("postgresql"):
                            await conn.execute(statement)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                            (step.version, step.description),
                        )
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        """Stop the change listener and close every pooled connection. Idempotent."""
        if self._pool is not None:
            await self._committer.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener
        self._subscribers = []
        pool, self._pool = self._pool, None
        idle, self._idle_readers = self._idle_readers, []
        self._readers = 0
        waiters, self._reader_waiters = self._reader_waiters, collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)  # it then finds the backend closed
        for conn, _ in idle:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
        if pool is not None:
            await pool.close()

    def _require_pool(self) -> psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            raise StorageError("postgresql: the backend is not open")
        return self._pool

    @staticmethod
    async def _version(conn: psycopg.AsyncConnection[Any]) -> int:
        cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        row = await cur.fetchone()
        if row is None or not row[0]:
            return 0
        cur = await conn.execute("SELECT max(version) FROM schema_migrations")
        row = await cur.fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    # -- StorageBackend -----------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """The value stored at ``key``, or ``None``."""
        pool = self._require_pool()
        reader = await self._reader(pool)
        if reader is None:  # no reader connections (pool_max 1)
            with _errors("get"):
                async with pool.connection() as conn:
                    return await _get(conn, key)
        conn, cursor = reader
        try:
            with _errors("get"):
                await cursor.execute(_SQL_GET, (key,), prepare=True)
                row = await cursor.fetchone()
        except BaseException:
            self._drop_reader(pool)
            with contextlib.suppress(Exception):
                await pool.putconn(conn)  # the pool closes it if it is broken or mid-query
            raise
        if self._pool is pool:
            self._release_reader(reader)
        else:  # closed while this read ran
            with contextlib.suppress(psycopg.Error):
                await conn.close()
        return None if row is None else bytes(row[0])

    async def _reader(self, pool: _Pool) -> _Reader | None:
        """An idle reader, a new one (up to the limit), or the next one released (waiting for it)."""
        while True:
            if self._idle_readers:
                return self._idle_readers.pop()
            if self._readers < self._reader_limit:
                self._readers += 1
                try:
                    with _errors("get"):
                        conn = await pool.getconn()
                except BaseException:
                    self._drop_reader(pool)
                    raise
                return conn, conn.cursor(binary=True)
            if self._reader_limit == 0:
                return None
            waiter: asyncio.Future[_Reader | None] = asyncio.get_running_loop().create_future()
            self._reader_waiters.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                if (
                    waiter.done()
                    and not waiter.cancelled()
                    and (given := waiter.result()) is not None
                ):
                    self._release_reader(given)  # handed over just as this read was cancelled
                elif waiter in self._reader_waiters:
                    self._reader_waiters.remove(waiter)
                raise
            if handed is not None:
                return handed
            pool = (
                self._require_pool()
            )  # woken without a reader: one was dropped, or the backend closed

    def _release_reader(self, reader: _Reader) -> None:
        waiters = self._reader_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(reader)
                return
        self._idle_readers.append(reader)

    def _drop_reader(self, pool: _Pool) -> None:
        """A reader went back to the pool: free its place and let one waiter open another."""
        if self._pool is not pool:
            return
        self._readers -= 1
        waiters = self._reader_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def list(
        self, prefix: str, *, after: str | None = None, limit: int | None = None
    ) -> list[str]:
        """Direct children of ``prefix``, folders with a trailing ``/``, sorted (a page: ``after``, ``limit``)."""
        pool = self._require_pool()
        with _errors("list"):
            async with pool.connection() as conn:
                return await _list(conn, prefix, after=after, limit=limit)

    async def scan(self, prefix: str) -> AsyncIterator[tuple[str, bytes]]:
        """Every (key, value) under ``prefix`` in key order, read in batches.

        Each batch is consistent; the whole scan is not a snapshot.
        """
        pool = self._require_pool()
        clause, params = _range(prefix)
        after: str | None = None
        while True:
            sql, args = clause, params
            if after is not None:
                sql, args = f"{clause} AND key > %s", (*params, after)
            with _errors("scan"):
                async with pool.connection() as conn:
                    cur = await conn.execute(
                        f"SELECT key, value FROM entries WHERE {sql} ORDER BY key LIMIT {_SCAN_BATCH}",  # noqa: S608 - fixed fragments only
                        args,
                    )
                    batch = [(str(k), bytes(v)) for k, v in await cur.fetchall()]
            for item in batch:
                yield item
            if len(batch) < _SCAN_BATCH:
                return
            after = batch[-1][0]

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """``async with backend.transaction() as tx:`` commits on success, rolls back on error.

        The block exits once the group it ran in has committed (see the module docstring).
        """
        return self._committer.transaction()

    @property
    def commit_stats(self) -> tuple[int, int]:
        """``(groups, transactions)`` committed so far: how well group commit batches."""
        return self._committer.groups, self._committer.members

    async def _begin_group(self) -> _PostgresGroup:
        pool = self._require_pool()
        with _errors("begin"):
            conn = await pool.getconn()
        return _PostgresGroup(pool, conn, self._origin)  # BEGIN travels with its first statement

    async def schema_version(self) -> int:
        """The highest migration applied to this database (0 when none)."""
        pool = self._require_pool()
        with _errors("schema_version"):
            async with pool.connection() as conn:
                return await self._version(conn)

    # -- exclusive locks (kustos.store.locking) ----------------------------------------

    async def try_hold(self, name: str) -> _AdvisoryLock | None:
        """Take the session advisory lock ``name`` on a connection of its own; ``None`` if taken.

        The lock lives as long as that connection: :meth:`_AdvisoryLock.release`
        closes it, and a process that dies loses the lock with its connection.
        """
        self._require_pool()
        with _errors("lock"):
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=max(1, int(self._timeout)),
                application_name=LOCK_APPLICATION_NAME,
            )
            try:
                cur = await conn.execute(
                    "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,)
                )
                row = await cur.fetchone()
            except BaseException:
                await conn.close()
                raise
        if row is None or not row[0]:
            await conn.close()
            return None
        return _AdvisoryLock(conn)

    # -- change notifications ---------------------------------------------------------

    @property
    def watching(self) -> bool:
        """Whether the LISTEN connection is up (notifications are being received)."""
        return self._listening.is_set()

    async def watch_changes(self, callback: ChangeCallback) -> Unsubscribe:
        """Call ``callback`` with every change committed by any process on this database.

        ``callback`` is called at once with ``everything=True`` and the current
        ``watching`` state, then from the listener task. The first subscriber
        starts the listener and waits up to ``connect_timeout`` for LISTEN (if
        that fails, the listener keeps retrying and reports ``watching=True``
        when it succeeds).
        """
        self._require_pool()
        self._subscribers.append(callback)
        callback(Changes(everything=True, watching=self.watching))
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name="kustos-pg-listen"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listening.wait(), self._timeout)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def _publish(self, changes: Changes) -> None:
        for callback in list(self._subscribers):
            try:
                callback(changes)
            except Exception:
                _log.exception("a change subscriber failed")

    async def _listen(self) -> None:
        """Keep one LISTEN connection up; report every notification and every state change."""
        delay = _RETRY_FIRST
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=max(1, round(self._timeout)),
                    application_name=LISTENER_APPLICATION_NAME,
                )
            except (psycopg.Error, OSError) as exc:
                _log.warning(
                    f"postgresql: change listener cannot connect ({type(exc).__name__}); retrying"
                )
            else:
                try:
                    async with conn:
                        await conn.execute(
                            sql.SQL("LISTEN {}").format(sql.Identifier(CHANGES_CHANNEL))
                        )
                        self._listening.set()
                        self._publish(Changes(everything=True, watching=True))
                        delay = _RETRY_FIRST
                        while True:
                            async for notify in conn.notifies(timeout=self._heartbeat):
                                self._publish(_parse_payload(notify.payload, self._origin))
                            await asyncio.wait_for(conn.execute("SELECT 1"), self._timeout)
                except Exception as exc:  # any failure: report it, reconnect
                    _log.warning(
                        f"postgresql: change listener lost its connection ({type(exc).__name__}); reconnecting"
                    )
                finally:
                    if self._listening.is_set():
                        self._listening.clear()
                        self._publish(Changes(everything=True, watching=False))
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)


def _payloads(origin: str, outcome: GroupOutcome) -> list[str]:
    """The notification payloads of one commit: keys, prefixes and announcements, each under ~7,900 bytes."""
    if not (outcome.keys or outcome.prefixes or outcome.announcements):
        return []
    keys = sorted(outcome.keys)
    announced = [[a.topic, a.document] for a in outcome.announcements]
    whole = _encode(origin, {"k": keys, "p": outcome.prefixes, "a": announced})
    if len(whole) <= _MAX_PAYLOAD:  # ASCII (json.dumps escapes the rest): one notification
        return [whole]
    items: list[tuple[str, Any]] = [("k", key) for key in keys]
    items += [("p", prefix) for prefix in outcome.prefixes]
    items += [("a", item) for item in announced]
    payloads: list[str] = []
    head = len(json.dumps({"o": origin, "k": [], "p": [], "a": []}, separators=(",", ":")))
    chunk: dict[str, list[Any]] = {"k": [], "p": [], "a": []}
    size = head
    for field, item in items:
        cost = len(json.dumps(item, separators=(",", ":")).encode("utf-8")) + 1
        if head + cost > _MAX_PAYLOAD:  # too large for any notification
            payloads.append(_FLUSH_ALL)
            continue
        if size + cost > _MAX_PAYLOAD:
            payloads.append(_encode(origin, chunk))
            chunk, size = {"k": [], "p": [], "a": []}, head
        chunk[field].append(item)
        size += cost
    if any(chunk.values()):
        payloads.append(_encode(origin, chunk))
    return payloads


def _encode(origin: str, chunk: Mapping[str, list[Any]]) -> str:
    return json.dumps({"o": origin, **chunk}, separators=(",", ":"))


def _parse_payload(payload: str, origin: str = "") -> Changes:
    """The :class:`Changes` a notification names; anything unreadable means "forget everything"."""
    if payload == _FLUSH_ALL:
        return Changes(everything=True)
    try:
        doc = json.loads(payload)
        keys = doc.get("k", [])
        prefixes = doc.get("p", [])
        raw_announcements = doc.get("a", [])
        if not (
            isinstance(keys, list)
            and isinstance(prefixes, list)
            and isinstance(raw_announcements, list)
        ):
            raise TypeError
        if not all(isinstance(k, str) for k in (*keys, *prefixes)):
            raise TypeError
        announcements = tuple(
            Announcement(topic=str(topic), document=document)
            for topic, document in raw_announcements
            if isinstance(document, dict)
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return Changes(everything=True)
    return Changes(
        keys=frozenset(keys),
        prefixes=tuple(prefixes),
        announcements=announcements,
        local=bool(origin) and doc.get("o") == origin,
    )


async def _get(conn: psycopg.AsyncConnection[Any], key: str) -> bytes | None:
    cur = await conn.execute(_SQL_GET, (key,))
    row = await cur.fetchone()
    return None if row is None else bytes(row[0])


async def _value(cur: psycopg.AsyncCursor[Any]) -> bytes | None:
    """The value of the ``SELECT value`` result the cursor is on."""
    row = await cur.fetchone()
    return None if row is None else bytes(row[0])


async def _list(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    *,
    after: str | None = None,
    limit: int | None = None,
) -> list[str]:
    params, options = children_params(prefix, after=after, limit=limit)
    sql = list_children_sql(dialect="postgresql", **options)
    cur = await conn.execute(sql, params)
    return sorted({child_name(str(row[0]), len(prefix)) for row in await cur.fetchall()})


class _PostgresGroup:
    """The open transaction of one group, on one pooled connection.

    Statements whose result nobody waits for (``BEGIN``, a transaction's
    writes, savepoints) are queued and sent in front of the next statement
    whose result is needed, as one simple query (several statements, values
    as quoted literals); a locked read sends its lock and its ``SELECT``
    together (separate statements, so under READ COMMITTED the ``SELECT``
    takes its snapshot after the lock is granted). So a KV write costs one
    round trip inside its group, plus the group's ``COMMIT``, which carries
    the notifications. An error in a queued statement fails the statement
    sent with it, which fails the group (:mod:`kustos.store._grouping`).

    The statements are built as bytes: a key (text) is quoted by libpq's
    ``PQescapeLiteral`` for this connection (its encoding and
    ``standard_conforming_strings``), a value (bytes) travels as
    ``decode('<hex>', 'hex')``, whose literal holds hex digits only. That
    costs a fraction of composing :mod:`psycopg.sql` objects, which was most
    of the server's CPU per write.
    """

    def __init__(self, pool: _Pool, conn: psycopg.AsyncConnection[Any], origin: str) -> None:
        self._pool = pool
        self._conn = conn
        self._cursor = conn.cursor()
        self._escape = psycopg.pq.Escaping(conn.pgconn).escape_literal
        self._encoding = conn.info.encoding
        self._origin = origin
        self._pending: list[bytes] = [b"BEGIN"]
        self._open = True
        self._locked: dict[str, bytes | None] = {}  # locked keys -> their value in this group
        self._tried: set[str] = set()  # keys locked ahead, or tried

    def _text(self, text: str) -> bytes:
        """``text`` as a quoted SQL string literal (libpq would cut it at a NUL: refused)."""
        if "\x00" in text:
            raise psycopg.DataError("PostgreSQL text cannot contain NUL (0x00) characters")
        try:
            return self._escape(text.encode(self._encoding))
        except UnicodeEncodeError as exc:
            raise psycopg.DataError("not encodable in the connection's encoding") from exc

    async def _run(self, *statements: bytes) -> psycopg.AsyncCursor[Any]:
        """Send the queued statements and ``statements`` in one round trip; the cursor is on the last result."""
        cur = await self._run_all(statements)
        while cur.nextset():
            pass
        return cur

    async def _run_all(self, statements: Sequence[bytes]) -> psycopg.AsyncCursor[Any]:
        """Send the queued statements and ``statements`` in one round trip; the cursor is on the first of ``statements``."""
        queued, self._pending = self._pending, []
        cur = self._cursor
        await cur.execute(b"; ".join([*queued, *statements]), prepare=False)
        for _ in queued:
            cur.nextset()
        return cur

    async def get(self, key: str, *, lock: bool, ahead: Sequence[str] = ()) -> bytes | None:
        """Read ``key``; a key this group locked is answered from memory (no round trip).

        With ``lock``, the round trip also tries to lock each key of
        ``ahead`` (``pg_try_advisory_xact_lock``, never waiting) and reads
        those it locked, so the transactions waiting for the lane find their
        first locked read done.
        """
        if key in self._locked:
            return self._locked[key]
        with _errors("get"):
            literal = self._text(key)
            statements = [b"SELECT value FROM entries WHERE key = " + literal]
            if lock:
                statements.insert(
                    0, b"SELECT pg_advisory_xact_lock(hashtextextended(" + literal + b", 0))"
                )
                self._tried.add(key)
                later = [k for k in dict.fromkeys(ahead) if k not in self._tried]
                for other in later:
                    self._tried.add(other)
                    quoted = self._text(other)
                    statements.append(
                        b"SELECT pg_try_advisory_xact_lock(hashtextextended(" + quoted + b", 0))"
                    )
                    statements.append(b"SELECT value FROM entries WHERE key = " + quoted)
            cur = await self._run_all(statements)
            if lock:
                cur.nextset()  # past the lock
            value = await _value(cur)
            if lock:
                self._locked[key] = value
                for other in later:
                    cur.nextset()
                    row = await cur.fetchone()
                    cur.nextset()
                    if row is not None and row[0]:
                        self._locked[other] = await _value(cur)
        return value

    async def apply(self, writes: Mapping[str, bytes | None]) -> None:
        with _errors("apply"):
            rows = [
                b"(" + self._text(key) + b", decode('" + binascii.hexlify(value) + b"', 'hex'))"
                for key, value in writes.items()
                if value is not None
            ]
            deletes = [self._text(key) for key, value in writes.items() if value is None]
        locked = self._locked
        if locked:
            for key, value in writes.items():
                if key in locked:
                    locked[key] = value
        if rows:
            self._pending.append(
                b"INSERT INTO entries (key, value) VALUES "
                + b", ".join(rows)
                + b" ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            )
        if deletes:
            self._pending.append(b"DELETE FROM entries WHERE key IN (" + b", ".join(deletes) + b")")

    async def delete_prefix(self, prefix: str) -> int:
        end = prefix_end(prefix)
        statement = b"DELETE FROM entries WHERE key >= " + self._text(prefix)
        if end is not None:
            statement += b" AND key < " + self._text(end)
        with _errors("delete_prefix"):
            cur = await self._run(statement)
        for key in self._locked:
            if key.startswith(prefix):
                self._locked[key] = None
        return max(cur.rowcount, 0)

    async def list(self, prefix: str) -> list[str]:
        with _errors("list"):
            if self._pending:
                await self._run()
            return await _list(self._conn, prefix)

    async def savepoint(self) -> None:
        self._pending.append(b"SAVEPOINT kustos_member")

    async def release_savepoint(self) -> None:
        self._pending.append(b"RELEASE SAVEPOINT kustos_member")

    async def rollback_to_savepoint(self) -> None:
        # undoes writes and releases the locks taken since the savepoint (ahead
        # of other transactions too): what this group knows is forgotten
        self._locked.clear()
        self._pending.append(b"ROLLBACK TO SAVEPOINT kustos_member")
        self._pending.append(b"RELEASE SAVEPOINT kustos_member")

    async def commit(self, outcome: GroupOutcome) -> None:
        """The queued writes, the notifications and ``COMMIT``: one round trip, all or nothing."""
        try:
            with _errors("commit"):
                channel = self._text(CHANGES_CHANNEL)
                notify = [
                    b"SELECT pg_notify(" + channel + b", " + self._text(payload) + b")"
                    for payload in _payloads(self._origin, outcome)
                ]
                await self._run(*notify, b"COMMIT")
        except BaseException:
            await self.rollback()
            raise
        await self._give_back()

    async def rollback(self) -> None:
        if not self._open:
            return
        self._pending = []
        with contextlib.suppress(psycopg.Error):
            await self._conn.execute("ROLLBACK")
        await self._give_back()

    async def _give_back(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):
                await self._pool.putconn(self._conn)  # the pool discards a broken connection


class _AdvisoryLock:
    """A session advisory lock, held by the one connection it was taken on."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn: psycopg.AsyncConnection[Any] | None = conn

    async def check(self) -> bool:
        """Whether the connection (and so the lock) is still there."""
        conn = self._conn
        if conn is None or conn.closed:
            return False
        try:
            await conn.execute("SELECT 1")
        except psycopg.Error:
            await self.release()
            return False
        return True

    async def release(self) -> None:
        """Close the connection: PostgreSQL drops the lock with its session."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
