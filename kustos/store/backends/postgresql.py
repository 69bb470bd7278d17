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

Change notifications (:meth:`PostgresBackend.watch_changes`): a transaction
that put or deleted keys sends ``pg_notify('kustos_changes', payload)`` in the
same round trip as its ``COMMIT``, so the notification is delivered only if
it commits, after its data is visible. The payload is JSON
``{"k": [keys], "p": [prefixes]}``, or ``*`` ("forget everything") when it
would exceed ~7,900 bytes (PostgreSQL's limit is 8,000). The first
subscriber starts one dedicated LISTEN connection; a notification reaches
every subscriber (this process's own commits too). Every
``heartbeat`` seconds without a notification the listener runs ``SELECT 1``
(bounded by ``connect_timeout``), so a silently dead connection is noticed.
When the connection fails, subscribers get ``watching=False`` at once (drop
and bypass caches) and the listener reconnects with backoff; once LISTEN is
back they get ``everything=True, watching=True``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final, TypeAlias

import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from kustos.errors import StorageError
from kustos.store import migrations
from kustos.store._keyspace import child_name, list_children_sql, prefix_end
from kustos.store.base import Transaction
from kustos.store.changes import ChangeCallback, Changes, Unsubscribe

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
_SQL_LOCK: Final = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
_SQL_PUT: Final = (
    "INSERT INTO entries (key, value) VALUES (%s, %s) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)
_SQL_DELETE: Final = "DELETE FROM entries WHERE key = %s"
_MIGRATION_LOCK: Final = "kustos:schema_migrations"
CHANGES_CHANNEL: Final = "kustos_changes"
"""The NOTIFY channel every committed write announces its keys on."""
LISTENER_APPLICATION_NAME: Final = "kustos-listener"
"""``application_name`` of the LISTEN connection (to spot it in ``pg_stat_activity``)."""
LOCK_APPLICATION_NAME: Final = "kustos-lock"
"""``application_name`` of a connection that holds an exclusive lock (:meth:`PostgresBackend.try_hold`)."""
_FLUSH_ALL: Final = "*"
_MAX_PAYLOAD: Final = 7_900  # bytes; PostgreSQL refuses payloads of 8,000 and more
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

    async def list(self, prefix: str) -> list[str]:
        """Direct children of ``prefix``, folders with a trailing ``/``, sorted."""
        pool = self._require_pool()
        with _errors("list"):
            async with pool.connection() as conn:
                return await _list(conn, prefix)

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

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """``async with backend.transaction() as tx:`` commits on success, rolls back on error."""
        pool = self._require_pool()
        async with contextlib.AsyncExitStack() as stack:
            with _errors("begin"):
                conn = await stack.enter_async_context(pool.connection())
                await conn.execute("BEGIN")
            tx = _PostgresTransaction(conn)
            try:
                yield tx
            except BaseException:
                tx.active = False
                with contextlib.suppress(psycopg.Error):
                    await conn.execute("ROLLBACK")
                raise
            tx.active = False
            try:
                with _errors("commit"):
                    await conn.execute(_commit_statement(tx.changed_keys, tx.changed_prefixes))
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    await conn.execute("ROLLBACK")
                raise

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
                                self._publish(_parse_payload(notify.payload))
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


def _commit_statement(keys: set[str], prefixes: list[str]) -> sql.Composed | str:
    """``COMMIT``, preceded by the notification of what the transaction changed (one round trip).

    Without parameters psycopg sends the text as one simple query, so both
    statements travel together; if ``pg_notify`` fails the ``COMMIT`` does not run.
    """
    if not keys and not prefixes:
        return "COMMIT"
    payload = json.dumps({"k": sorted(keys), "p": prefixes}, separators=(",", ":"))
    if len(payload.encode("utf-8")) > _MAX_PAYLOAD:
        payload = _FLUSH_ALL
    return sql.SQL("SELECT pg_notify({}, {}); COMMIT").format(
        sql.Literal(CHANGES_CHANNEL), sql.Literal(payload)
    )


def _parse_payload(payload: str) -> Changes:
    """The :class:`Changes` a notification names; anything unreadable means "forget everything"."""
    if payload == _FLUSH_ALL:
        return Changes(everything=True)
    try:
        doc = json.loads(payload)
        keys = doc["k"]
        prefixes = doc["p"]
        if not (isinstance(keys, list) and isinstance(prefixes, list)):
            raise TypeError
        if not all(isinstance(k, str) for k in (*keys, *prefixes)):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return Changes(everything=True)
    return Changes(keys=frozenset(keys), prefixes=tuple(prefixes))


async def _get(conn: psycopg.AsyncConnection[Any], key: str) -> bytes | None:
    cur = await conn.execute(_SQL_GET, (key,))
    row = await cur.fetchone()
    return None if row is None else bytes(row[0])


async def _list(conn: psycopg.AsyncConnection[Any], prefix: str) -> list[str]:
    end = prefix_end(prefix)
    params: dict[str, object] = {"prefix": prefix, "n": len(prefix)}
    if end is not None:
        params["end"] = end
    sql = list_children_sql(dialect="postgresql", bounded=end is not None)
    cur = await conn.execute(sql, params)
    return sorted({child_name(str(row[0]), len(prefix)) for row in await cur.fetchall()})


class _PostgresTransaction:
    """Statements of one transaction, all on one pooled connection."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn
        self.active = True
        self.changed_keys: set[str] = set()
        self.changed_prefixes: list[str] = []

    def _check(self) -> psycopg.AsyncConnection[Any]:
        if not self.active:
            raise StorageError("postgresql: the transaction has already ended")
        return self._conn

    async def get(self, key: str, *, for_update: bool = False) -> bytes | None:
        """Read ``key``; with ``for_update``, first lock it until the transaction ends."""
        conn = self._check()
        with _errors("get"):
            if for_update:
                # A separate statement: under READ COMMITTED the SELECT below
                # then takes its snapshot after the lock is granted.
                await conn.execute(_SQL_LOCK, (key,))
            return await _get(conn, key)

    async def put(self, key: str, value: bytes) -> None:
        """Insert or replace the value at ``key``."""
        conn = self._check()
        with _errors("put"):
            await conn.execute(_SQL_PUT, (key, bytes(value)))
        self.changed_keys.add(key)

    async def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it is absent)."""
        conn = self._check()
        with _errors("delete"):
            await conn.execute(_SQL_DELETE, (key,))
        self.changed_keys.add(key)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; return how many."""
        conn = self._check()
        clause, params = _range(prefix)
        with _errors("delete_prefix"):
            cur = await conn.execute(f"DELETE FROM entries WHERE {clause}", params)  # noqa: S608 - fixed fragments only
        deleted = max(cur.rowcount, 0)
        if deleted:
            self.changed_prefixes.append(prefix)
        return deleted

    async def list(self, prefix: str) -> list[str]:
        """Like :meth:`PostgresBackend.list`, seeing this transaction's writes."""
        conn = self._check()
        with _errors("list"):
            return await _list(conn, prefix)


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
