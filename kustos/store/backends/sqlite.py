"""The embedded storage backend: one SQLite file in WAL mode.

The default for a single server (and for ``kustos server --dev``). A write
is durable when its transaction's ``async with`` block exits: WAL journal
with ``synchronous=FULL`` fsyncs the log on every commit.

Writes use group commit (:mod:`kustos.store._grouping`): the transactions
of this process run one after another on the one writer connection inside
one ``BEGIN IMMEDIATE`` ... ``COMMIT``, so concurrent writers share one
``fdatasync``. Their statements (point reads, upserts of buffered writes,
savepoints) run on the event loop thread: on a database the writer holds
they touch the page cache and the WAL buffer and take microseconds, less than
a hand-off to a thread would. What can block runs on the dedicated writer
thread: ``BEGIN IMMEDIATE`` (it may wait up to ``busy_timeout`` for another
process holding the file's write lock) and ``COMMIT`` (the fsync). Writers are
serialized in this process by the group slot and across processes by the
file lock, which makes ``get(key, for_update=True)`` safe by construction.

Reads outside a transaction go to a small pool of read-only connections on
their own threads, and WAL lets them proceed while a write is in progress;
they see a group's writes once it has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

from kustos.errors import StorageError
from kustos.store import migrations
from kustos.store._grouping import GroupCommitter, GroupOutcome
from kustos.store._keyspace import child_name, children_params, list_children_sql, prefix_end
from kustos.store.base import Transaction

__all__ = ["SqliteBackend"]

_T = TypeVar("_T")

_SCAN_BATCH: Final = 256
_SQL_GET: Final = "SELECT value FROM entries WHERE key = ?"
_SQL_PUT: Final = (
    "INSERT INTO entries (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_SQL_DELETE: Final = "DELETE FROM entries WHERE key = ?"


@contextlib.contextmanager
def _errors(operation: str) -> Iterator[None]:
    """Turn sqlite3 and OS failures into StorageError (SQLite never echoes bound values)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageError(f"sqlite: {operation} failed: {exc}") from exc
    except OSError as exc:
        raise StorageError(
            f"sqlite: {operation} failed: {exc.strerror or type(exc).__name__}"
        ) from exc


def _connect(path: Path, *, busy_timeout: float, read_only: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if read_only:
            conn.execute("PRAGMA query_only = ON")
        else:
            _enable_wal(conn, busy_timeout=busy_timeout)
        conn.execute("PRAGMA synchronous = FULL")
    except BaseException:
        conn.close()
        raise
    return conn


def _enable_wal(conn: sqlite3.Connection, *, busy_timeout: float) -> None:
    """Switch to WAL (persistent in the file), retrying while another opener holds it.

    Changing the journal mode does not always wait on the busy handler, so
    concurrent first opens retry here until ``busy_timeout``.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            row = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if row is None or str(row[0]).lower() != "wal":
            raise StorageError("sqlite: the database could not be switched to WAL mode")
        return


def _range_clause(prefix: str) -> tuple[str, tuple[str, ...]]:
    end = prefix_end(prefix)
    if end is None:
        return "key >= ?", (prefix,)
    return "key >= ? AND key < ?", (prefix, end)


def _list(
    conn: sqlite3.Connection, prefix: str, *, after: str | None = None, limit: int | None = None
) -> list[str]:
    params, options = children_params(prefix, after=after, limit=limit)
    rows = conn.execute(list_children_sql(dialect="sqlite", **options), params)
    return sorted({child_name(row[0], len(prefix)) for row in rows})


def _get(conn: sqlite3.Connection, key: str) -> bytes | None:
    row = conn.execute(_SQL_GET, (key,)).fetchone()
    return None if row is None else bytes(row[0])


def _scan_batch(
    conn: sqlite3.Connection, *, prefix: str, after: str | None
) -> list[tuple[str, bytes]]:
    clause, params = _range_clause(prefix)
    if after is not None:
        clause += " AND key > ?"
        params = (*params, after)
    rows = conn.execute(
        f"SELECT key, value FROM entries WHERE {clause} ORDER BY key LIMIT {_SCAN_BATCH}",  # noqa: S608 - fixed fragments only
        params,
    ).fetchall()
    return [(str(k), bytes(v)) for k, v in rows]


def _schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(migrations.bookkeeping_ddl("sqlite"))
        for step in migrations.pending_migrations(_schema_version(conn)):
            for statement in step.statements("sqlite"):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (?, ?)",
                (step.version, step.description),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _prepare_file(path: Path) -> None:
    """Create the parent directory (0700) and the database file (0600) if missing."""
    parent = path.parent
    if not parent.exists():
        with contextlib.suppress(FileExistsError):  # another opener won the race
            parent.mkdir(mode=0o700, parents=True)
            parent.chmod(0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    path.chmod(0o600)


class SqliteBackend:
    """A :class:`~kustos.store.base.StorageBackend` on one SQLite file.

    ``readers`` read-only connections serve reads outside transactions;
    ``busy_timeout`` (seconds) is how long a write waits for another process
    holding the file's write lock before failing with :class:`StorageError`.
    """

    def __init__(self, path: Path, *, readers: int = 4, busy_timeout: float = 5.0) -> None:
        if readers < 1:
            raise ValueError("readers must be at least 1")
        self._path = Path(path)
        self._reader_count = readers
        self._busy_timeout = busy_timeout
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._read_conns: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_read_conns: list[sqlite3.Connection] = []
        self._committer = GroupCommitter(backend="sqlite", begin=self._begin_group)

    def __repr__(self) -> str:
        return f"SqliteBackend(path={str(self._path)!r})"

    @property
    def name(self) -> str:
        """Always ``sqlite``."""
        return "sqlite"

    @property
    def path(self) -> Path:
        """The database file (the WAL lives beside it as ``<path>-wal``)."""
        return self._path

    async def __aenter__(self) -> SqliteBackend:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the file if needed, switch to WAL, and apply pending migrations."""
        if self._writer is not None:
            return
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kustos-sqlite-writer")
        readers = ThreadPoolExecutor(
            max_workers=self._reader_count, thread_name_prefix="kustos-sqlite-reader"
        )
        loop = asyncio.get_running_loop()
        try:
            self._write_conn = await loop.run_in_executor(writer, self._open_writer)
            for _ in range(self._reader_count):
                conn = await loop.run_in_executor(readers, self._open_reader)
                self._all_read_conns.append(conn)
                self._read_conns.put(conn)
        except BaseException:
            await loop.run_in_executor(writer, self._close_connections)
            writer.shutdown(wait=True)
            readers.shutdown(wait=True)
            raise
        self._writer, self._readers = writer, readers

    def _open_writer(self) -> sqlite3.Connection:
        with _errors("open"):
            _prepare_file(self._path)
            conn = _connect(self._path, busy_timeout=self._busy_timeout, read_only=False)
            try:
                _migrate(conn)
            except BaseException:
                conn.close()
                raise
            return conn

    def _open_reader(self) -> sqlite3.Connection:
        with _errors("open"):
            return _connect(self._path, busy_timeout=self._busy_timeout, read_only=True)

    def _close_connections(self) -> None:
        for conn in self._all_read_conns:
            conn.close()
        self._all_read_conns.clear()
        self._read_conns = queue.SimpleQueue()
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None

    async def close(self) -> None:
        """Wait for running work, then close every connection. Idempotent."""
        writer, readers = self._writer, self._readers
        if writer is None or readers is None:
            return
        await self._committer.close()
        self._writer = self._readers = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, readers.shutdown, True)
        await loop.run_in_executor(writer, self._close_connections)
        await loop.run_in_executor(None, writer.shutdown, True)

    # -- plumbing ---------------------------------------------------------------

    async def _read(self, operation: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        readers = self._readers
        if readers is None:
            raise StorageError("sqlite: the backend is not open")

        def run() -> _T:
            conn = self._read_conns.get()
            try:
                with _errors(operation):
                    return fn(conn)
            finally:
                self._read_conns.put(conn)

        return await asyncio.get_running_loop().run_in_executor(readers, run)

    async def _write(self, operation: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        writer, conn = self._writer, self._write_conn
        if writer is None or conn is None:
            raise StorageError("sqlite: the backend is not open")

        def run() -> _T:
            with _errors(operation):
                return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(writer, run)

    # -- StorageBackend -----------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """The value stored at ``key``, or ``None``."""
        return await self._read("get", lambda conn: _get(conn, key))

    async def list(
        self, prefix: str, *, after: str | None = None, limit: int | None = None
    ) -> list[str]:
        """Direct children of ``prefix``, folders with a trailing ``/``, sorted (a page: ``after``, ``limit``)."""
        return await self._read("list", lambda conn: _list(conn, prefix, after=after, limit=limit))

    async def scan(self, prefix: str) -> AsyncIterator[tuple[str, bytes]]:
        """Every (key, value) under ``prefix`` in key order, read in batches.

        Each batch is consistent; the whole scan is not a snapshot (writes made
        while it runs may or may not be seen).
        """
        after: str | None = None
        while True:
            batch = await self._read(
                "scan", functools.partial(_scan_batch, prefix=prefix, after=after)
            )
            for item in batch:
                yield item
            if len(batch) < _SCAN_BATCH:
                return
            after = batch[-1][0]

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """``async with backend.transaction() as tx:`` commits on success, rolls back on error.

        The block exits once the group it ran in is durable (see the module docstring).
        """
        return self._committer.transaction()

    @property
    def commit_stats(self) -> tuple[int, int]:
        """``(groups, transactions)`` committed so far: how well group commit batches."""
        return self._committer.groups, self._committer.members

    async def _begin_group(self) -> _SqliteGroup:
        conn = self._write_conn
        if self._writer is None or conn is None:
            raise StorageError("sqlite: the backend is not open")
        await self._write("begin", lambda c: c.execute("BEGIN IMMEDIATE").close())
        return _SqliteGroup(self, conn)

    async def schema_version(self) -> int:
        """The highest migration applied to this database (0 when none)."""
        return await self._read("schema_version", _schema_version)


class _SqliteGroup:
    """The open ``BEGIN IMMEDIATE`` transaction of one group, on the writer connection.

    Statements run inline (see the module docstring); ``COMMIT`` and
    ``ROLLBACK`` on the writer thread, which runs jobs in order, so a
    ``ROLLBACK`` always precedes the next group's ``BEGIN``.
    """

    def __init__(self, backend: SqliteBackend, conn: sqlite3.Connection) -> None:
        self._backend = backend
        self._conn = conn

    async def get(self, key: str, *, lock: bool, ahead: Sequence[str] = ()) -> bytes | None:
        with _errors("get"):
            return _get(self._conn, key)

    async def apply(self, writes: Mapping[str, bytes | None]) -> None:
        with _errors("put"):
            puts = [(key, value) for key, value in writes.items() if value is not None]
            deletes = [(key,) for key, value in writes.items() if value is None]
            if puts:
                self._conn.executemany(_SQL_PUT, puts).close()
            if deletes:
                self._conn.executemany(_SQL_DELETE, deletes).close()

    async def delete_prefix(self, prefix: str) -> int:
        clause, params = _range_clause(prefix)
        sql = f"DELETE FROM entries WHERE {clause}"  # noqa: S608 - fixed fragments only
        with _errors("delete_prefix"):
            cursor = self._conn.execute(sql, params)
            deleted = cursor.rowcount
            cursor.close()
            return deleted

    async def list(self, prefix: str) -> list[str]:
        with _errors("list"):
            return _list(self._conn, prefix)

    async def savepoint(self) -> None:
        with _errors("savepoint"):
            self._conn.execute("SAVEPOINT kustos_member").close()

    async def release_savepoint(self) -> None:
        with _errors("savepoint"):
            self._conn.execute("RELEASE kustos_member").close()

    async def rollback_to_savepoint(self) -> None:
        with _errors("savepoint"):
            self._conn.execute("ROLLBACK TO kustos_member").close()
            self._conn.execute("RELEASE kustos_member").close()

    async def commit(self, outcome: GroupOutcome) -> None:
        await self._backend._write("commit", lambda conn: conn.execute("COMMIT").close())

    async def rollback(self) -> None:
        def rollback(conn: sqlite3.Connection) -> None:
            if conn.in_transaction:
                conn.execute("ROLLBACK").close()

        with contextlib.suppress(StorageError):
            await asyncio.shield(self._backend._write("rollback", rollback))
