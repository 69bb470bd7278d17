"""One storage test suite, run against every backend (real SQLite file, real PostgreSQL).

Each test gets an empty store: a fresh SQLite file, or a fresh database on the
session's throwaway PostgreSQL server. ``store.new()`` opens a *second*
backend instance on the same data, which is how two server processes share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from kustos.config import StorageConfig
from kustos.errors import StorageError
from kustos.store import (
    LATEST_VERSION,
    PostgresBackend,
    SqliteBackend,
    StorageBackend,
    open_backend,
    sqlite_url,
)
from tests.support.postgres import create_database, postgres_url  # noqa: F401

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@dataclass(frozen=True)
class Store:
    """Where one test's data lives; ``new()`` builds another backend on it."""

    kind: str
    location: str

    def new(self) -> StorageBackend:
        if self.kind == "sqlite":
            return SqliteBackend(Path(self.location))
        return PostgresBackend(self.location, pool_min=1, pool_max=8)

    def raw_execute(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Run SQL (``?`` placeholders) beside the backend, to inspect or tamper with it."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.location, isolation_level=None) as conn:
                rows = conn.execute(sql, params).fetchall()
            conn.close()
            return rows
        with psycopg.connect(self.location, autocommit=True) as pg:
            cur = pg.execute(sql.replace("?", "%s").encode(), params)
            return list(cur.fetchall()) if cur.description else []


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store("sqlite", str(tmp_path / "data" / "kustos.db"))
    return Store("postgresql", create_database(request.getfixturevalue("postgres_url")))


@pytest.fixture
def pg_store(postgres_url: str) -> Store:  # noqa: F811 - the fixture imported above
    return Store("postgresql", create_database(postgres_url))


@pytest.fixture
async def backend(store: Store) -> AsyncIterator[StorageBackend]:
    async with opened_on(store) as instance:
        yield instance


@contextlib.asynccontextmanager
async def opened_on(store: Store) -> AsyncIterator[StorageBackend]:
    instance = store.new()
    await instance.open()
    try:
        yield instance
    finally:
        await instance.close()


async def put_all(backend: StorageBackend, items: dict[str, bytes]) -> None:
    async with backend.transaction() as tx:
        for key, value in items.items():
            await tx.put(key, value)


def reference_list(keys: list[str], prefix: str) -> list[str]:
    """Vault's folder semantics, computed the slow obvious way."""
    children: set[str] = set()
    for key in keys:
        if key.startswith(prefix) and key != prefix:
            rest = key[len(prefix) :]
            children.add(rest.split("/", 1)[0] + "/" if "/" in rest else rest)
    return sorted(children)


# -- basic operations -------------------------------------------------------------


async def test_get_put_overwrite_delete(backend: StorageBackend) -> None:
    assert await backend.get("kv/m/data/app") is None
    await put_all(backend, {"kv/m/data/app": b"v1"})
    assert await backend.get("kv/m/data/app") == b"v1"
    await put_all(backend, {"kv/m/data/app": b"v2"})
    assert await backend.get("kv/m/data/app") == b"v2"
    async with backend.transaction() as tx:
        await tx.delete("kv/m/data/app")
        await tx.delete("kv/m/data/never-existed")
    assert await backend.get("kv/m/data/app") is None


async def test_binary_values_round_trip_unchanged(backend: StorageBackend) -> None:
    values = {
        "all-bytes": bytes(range(256)) * 3,
        "empty": b"",
        "nuls": b"\x00" * 17,
        "invalid-utf8": b"\xff\xfe\xc3\x28\x80",
        "one-mebibyte": random.Random(7).randbytes(1024 * 1024),
        "unicode/clé/秘密": b"\x01\x02",
    }
    await put_all(backend, values)
    for key, value in values.items():
        got = await backend.get(key)
        assert got == value and type(got) is bytes, key
    async with backend.transaction() as tx:
        assert await tx.get("all-bytes") == values["all-bytes"]


async def test_keys_that_need_quoting_are_stored_as_given(backend: StorageBackend) -> None:
    # PostgreSQL groups send keys as quoted literals: quotes, backslashes and
    # SQL text in a key must land in that key and nowhere else
    keys = [
        "q/it's",
        "q/back\\slash\\",
        "q/x'); DELETE FROM entries; --",
        "q/E'\\x41'",
        "q/$$dollar$$",
        "q/ünï/秘密",
    ]
    await put_all(backend, {"other": b"kept"})
    async with backend.transaction() as tx:
        for key in keys:
            assert await tx.get(key, for_update=True) is None
            await tx.put(key, key.encode() + b"\x00'\\")
    for key in keys:
        assert await backend.get(key) == key.encode() + b"\x00'\\", key
    async with backend.transaction() as tx:
        await tx.delete(keys[0])
        assert await tx.delete_prefix("q/x'") == 1
    assert await backend.list("q/") == sorted(["back\\slash\\", "E'\\x41'", "$$dollar$$", "ünï/"])
    assert await backend.get("other") == b"kept"


async def test_transaction_reads_its_own_writes(backend: StorageBackend) -> None:
    async with backend.transaction() as tx:
        await tx.put("t/a", b"1")
        assert await tx.get("t/a") == b"1"
        assert await tx.list("t/") == ["a"]
        await tx.delete("t/a")
        assert await tx.get("t/a") is None


async def test_commit_makes_writes_visible_to_other_instances(
    backend: StorageBackend, store: Store
) -> None:
    await put_all(backend, {"shared/x": b"committed"})
    async with opened_on(store) as other:
        assert await other.get("shared/x") == b"committed"


async def test_exception_rolls_back_every_write(backend: StorageBackend) -> None:
    await put_all(backend, {"r/keep": b"old"})

    class BoomError(Exception):
        pass

    with pytest.raises(BoomError):
        async with backend.transaction() as tx:
            await tx.put("r/keep", b"new")
            await tx.put("r/added", b"x")
            await tx.delete_prefix("r/")
            raise BoomError
    assert await backend.get("r/keep") == b"old"
    assert await backend.get("r/added") is None
    # The backend is still usable after a rollback.
    await put_all(backend, {"r/after": b"ok"})
    assert await backend.list("r/") == ["after", "keep"]


async def test_cancelled_transaction_rolls_back(backend: StorageBackend) -> None:
    started = asyncio.Event()

    async def writer() -> None:
        async with backend.transaction() as tx:
            await tx.put("c/k", b"uncommitted")
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(writer())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await backend.get("c/k") is None
    await put_all(backend, {"c/k": b"next"})
    assert await backend.get("c/k") == b"next"


async def test_using_a_finished_transaction_fails(backend: StorageBackend) -> None:
    async with backend.transaction() as tx:
        await tx.put("f/a", b"1")
    with pytest.raises(StorageError, match="already ended"):
        await tx.put("f/b", b"2")
    assert await backend.get("f/b") is None


async def test_reads_do_not_wait_for_an_open_write_transaction(backend: StorageBackend) -> None:
    await put_all(backend, {"w/k": b"committed"})
    async with backend.transaction() as tx:
        await tx.put("w/k", b"pending")
        # Served by another connection while the writer holds its lock.
        assert await asyncio.wait_for(backend.get("w/k"), timeout=30) == b"committed"
        assert await asyncio.wait_for(backend.list("w/"), timeout=30) == ["k"]
    assert await backend.get("w/k") == b"pending"


# -- list, scan, delete_prefix ----------------------------------------------------


async def test_list_answers_with_vault_folder_semantics(backend: StorageBackend) -> None:
    keys = ["a", "a/b", "a/c/d", "a-b", "a0", "b/x/y", "c", "other/z", "a/c/e/f"]
    await put_all(backend, dict.fromkeys(keys, b"v"))
    assert await backend.list("") == ["a", "a-b", "a/", "a0", "b/", "c", "other/"]
    assert await backend.list("a/") == ["b", "c/"]
    assert await backend.list("a/c/") == ["d", "e/"]
    assert await backend.list("b/") == ["x/"]
    assert await backend.list("missing/") == []


async def test_list_matches_a_reference_on_random_trees(backend: StorageBackend) -> None:
    rng = random.Random(2024)
    segments = ["a", "b", "ab", "a-b", "a.b", "z", "é", "秘", "~", "0", "A"]
    keys = sorted({"/".join(rng.choices(segments, k=rng.randint(1, 4))) for _ in range(400)})
    await put_all(backend, dict.fromkeys(keys, b"v"))
    prefixes = {""} | {key.rsplit("/", 1)[0] + "/" for key in keys if "/" in key}
    for prefix in sorted(prefixes):
        assert await backend.list(prefix) == reference_list(keys, prefix), prefix


async def test_list_pages_match_slices_of_the_whole_listing(backend: StorageBackend) -> None:
    rng = random.Random(7)
    segments = ["a", "b", "ab", "a-b", "a.b", "z", "é", "秘", "~", "0", "A", "a0"]
    keys = sorted({"/".join(rng.choices(segments, k=rng.randint(1, 3))) for _ in range(300)})
    await put_all(backend, dict.fromkeys(keys, b"v"))
    prefixes = {""} | {key.rsplit("/", 1)[0] + "/" for key in keys if "/" in key}
    for prefix in sorted(prefixes):
        whole = reference_list(keys, prefix)
        # cursors: every name, names that do not exist (between, before, after all), inside folders
        cursors = {*whole, "", "0", "~~~", "a/", "a/zzz", "a.", "é/x"}
        for after in sorted(cursors):
            beyond = [name for name in whole if name > after] if after else whole
            for limit in (None, 1, 2, 5, 1000):
                page = await backend.list(prefix, after=after or None, limit=limit)
                assert page == beyond[:limit], (prefix, after, limit)
    assert await backend.list("", limit=0) == reference_list(keys, "")
    assert await backend.list("", limit=-3) == reference_list(keys, "")


async def test_scan_yields_keys_in_order_across_batches(backend: StorageBackend) -> None:
    rng = random.Random(11)
    inside = [
        f"s/{rng.choice(['x', 'é', 'Z', '~', '秘'])}{i:04d}/{j}"
        for i in range(300)
        for j in range(2)
    ]
    outside = ["s", "r/1", "s0", "s-", "t/1"]
    items = {key: key.encode()[::-1] for key in inside + outside}
    keys = list(items)
    rng.shuffle(keys)
    await put_all(backend, {key: items[key] for key in keys})
    scanned = [item async for item in backend.scan("s/")]
    assert [k for k, _ in scanned] == sorted(inside)
    assert all(value == items[key] for key, value in scanned)
    everything = [k async for k, _ in backend.scan("")]
    assert everything == sorted(items)


async def test_delete_prefix_removes_exactly_the_prefix(backend: StorageBackend) -> None:
    keys = ["d/1", "d/2/x", "d/2/y", "d", "d-1", "d0", "e/1"]
    await put_all(backend, dict.fromkeys(keys, b"v"))
    async with backend.transaction() as tx:
        assert await tx.delete_prefix("d/") == 3
        assert await tx.delete_prefix("d/") == 0
    assert [k async for k, _ in backend.scan("")] == ["d", "d-1", "d0", "e/1"]


# -- concurrency ------------------------------------------------------------------


async def test_check_and_set_never_loses_an_update(backend: StorageBackend, store: Store) -> None:
    """Tasks on two backend instances (two "processes") increment one counter."""
    second = store.new()
    await second.open()
    try:
        instances = [backend, second]
        workers, rounds = 8, 15

        async def increment(instance: StorageBackend) -> None:
            for _ in range(rounds):
                async with instance.transaction() as tx:
                    current = await tx.get("counter", for_update=True)
                    await asyncio.sleep(0)  # give the others a chance to interleave
                    await tx.put("counter", str(int(current or b"0") + 1).encode())

        await asyncio.gather(*(increment(instances[i % 2]) for i in range(workers)))
    finally:
        await second.close()
    assert await backend.get("counter") == str(workers * rounds).encode()


async def test_for_update_locks_a_key_that_does_not_exist_yet(
    backend: StorageBackend, store: Store
) -> None:
    second = store.new()
    await second.open()
    created: list[int] = []
    try:

        async def create_once(number: int, instance: StorageBackend) -> None:
            async with instance.transaction() as tx:
                if await tx.get("fresh", for_update=True) is None:
                    await asyncio.sleep(0.01)
                    await tx.put("fresh", str(number).encode())
                    created.append(number)

        await asyncio.gather(*(create_once(i, (backend, second)[i % 2]) for i in range(6)))
    finally:
        await second.close()
    assert len(created) == 1
    assert await backend.get("fresh") == str(created[0]).encode()


# -- schema -----------------------------------------------------------------------


async def test_migrations_are_applied_once_and_recorded(store: Store) -> None:
    for _ in range(3):
        async with opened_on(store) as opened:
            assert await opened.schema_version() == LATEST_VERSION
    rows = store.raw_execute("SELECT version FROM schema_migrations ORDER BY version")
    assert [row[0] for row in rows] == list(range(1, LATEST_VERSION + 1))


async def test_concurrent_first_opens_migrate_once(store: Store) -> None:
    instances = [store.new() for _ in range(3)]
    try:
        await asyncio.gather(*(instance.open() for instance in instances))
        versions = [await instance.schema_version() for instance in instances]
    finally:
        for instance in instances:
            await instance.close()
    assert versions == [LATEST_VERSION] * 3
    assert store.raw_execute("SELECT count(*) FROM schema_migrations") == [(LATEST_VERSION,)]


async def test_a_newer_schema_is_refused(store: Store) -> None:
    async with opened_on(store) as opened:
        await put_all(opened, {"keep": b"data"})
    store.raw_execute(
        "INSERT INTO schema_migrations (version, description) VALUES (?, ?)",
        (LATEST_VERSION + 1, "from the future"),
    )
    newer = store.new()
    with pytest.raises(StorageError, match=f"version {LATEST_VERSION + 1}, newer than this Kustos"):
        await newer.open()
    with pytest.raises(StorageError, match="not open"):
        await newer.get("keep")
    assert store.raw_execute("SELECT count(*) FROM entries") == [(1,)]


# -- failures ---------------------------------------------------------------------


async def test_a_backend_that_is_not_open_raises_storage_error(store: Store) -> None:
    closed = store.new()
    with pytest.raises(StorageError, match="not open"):
        await closed.get("x")
    with pytest.raises(StorageError, match="not open"):
        async with closed.transaction():
            pass


async def test_sqlite_unusable_path_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a directory")
    with pytest.raises(StorageError, match="sqlite: open failed"):
        await SqliteBackend(blocker / "kustos.db").open()
    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(b"this is not an SQLite database, just text" * 100)
    with pytest.raises(StorageError, match="sqlite: open failed"):
        await SqliteBackend(not_a_db).open()


async def test_sqlite_file_modes_and_durability_settings(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "kustos.db"
    async with SqliteBackend(path) as opened:
        await put_all(opened, {"k": b"v"})
        assert path.parent.stat().st_mode & 0o777 == 0o700
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert file.stat().st_mode & 0o777 == 0o600, file
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.close()


@pytest.mark.postgres
async def test_postgres_unreachable_server_raises_storage_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = sock.getsockname()[1]
        backend = PostgresBackend(
            f"postgresql://postgres:s3cret-pw@127.0.0.1:{port}/none", connect_timeout=1.0
        )
        with pytest.raises(StorageError, match="postgresql: open failed") as caught:
            await backend.open()
    assert "s3cret-pw" not in str(caught.value)
    assert "s3cret-pw" not in repr(backend)


@pytest.mark.postgres
async def test_postgres_broken_connections_raise_storage_error_then_recover(
    pg_store: Store,
) -> None:
    store = pg_store
    async with PostgresBackend(store.location, pool_min=2, pool_max=2) as opened:
        await put_all(opened, {"k": b"v"})
        dbname = psycopg.conninfo.conninfo_to_dict(store.location)["dbname"]
        killed = store.raw_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = ? AND pid <> pg_backend_pid()",
            (dbname,),
        )
        assert killed and all(row[0] for row in killed)
        failures = 0
        for _ in range(5):
            try:
                assert await opened.get("k") == b"v"
                break
            except StorageError as exc:
                failures += 1
                assert "postgresql: get failed" in str(exc)
        assert 1 <= failures <= 2  # each dead pooled connection fails once, then is replaced
        assert await opened.get("k") == b"v"


@pytest.mark.postgres
async def test_postgres_error_messages_never_carry_values(pg_store: Store) -> None:
    store = pg_store
    async with opened_on(store) as opened:
        with pytest.raises(StorageError) as caught:
            async with opened.transaction() as tx:
                await tx.put("bad\x00key", b"VALUE-MARKER-123")
        assert "VALUE-MARKER-123" not in str(caught.value)
        assert await opened.get("bad") is None


# -- configuration ----------------------------------------------------------------


async def test_open_backend_builds_the_configured_backend(tmp_path: Path, store: Store) -> None:
    url = sqlite_url(Path(store.location)) if store.kind == "sqlite" else store.location
    built = open_backend(StorageConfig(url=url))
    assert built.name == store.kind
    await built.open()
    try:
        await put_all(built, {"via/config": b"ok"})
        assert await built.get("via/config") == b"ok"
    finally:
        await built.close()
