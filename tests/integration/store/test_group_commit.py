"""Group commit on both backends: concurrent transactions share a commit, each still commits alone.

Run against a real SQLite file and a real PostgreSQL database. What a group
must keep: every transaction whose block exited is durable (a second backend
on the same data sees it); a transaction that raises leaves nothing, even when
it shares a group with ones that commit; a failure of the database inside a
group fails every transaction of that group, none of which was acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from kustos.errors import StorageError
from kustos.store import PostgresBackend, SqliteBackend, StorageBackend
from tests.support.postgres import create_database, postgres_url  # noqa: F401

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "data" / "kustos.db")
    return create_database(request.getfixturevalue("postgres_url"))


def _new(location: str) -> SqliteBackend | PostgresBackend:
    if location.startswith("postgresql://"):
        return PostgresBackend(location, pool_min=1, pool_max=8)
    return SqliteBackend(Path(location))


@pytest.fixture
async def backend(location: str) -> AsyncIterator[SqliteBackend | PostgresBackend]:
    instance = _new(location)
    await instance.open()
    try:
        yield instance
    finally:
        await instance.close()


async def _write(backend: StorageBackend, key: str, value: bytes) -> None:
    async with backend.transaction() as tx:
        current = await tx.get(key, for_update=True)
        await tx.put(key, (current or b"") + value)


async def test_concurrent_transactions_share_commits_and_all_are_durable(
    backend: SqliteBackend | PostgresBackend, location: str
) -> None:
    groups_before, members_before = backend.commit_stats
    await asyncio.gather(*(_write(backend, f"group/k{i}", b"v") for i in range(64)))
    groups, members = backend.commit_stats
    assert members - members_before == 64
    assert groups - groups_before < 64  # at least two transactions shared one commit
    other = _new(location)
    await other.open()
    try:
        for i in range(64):
            assert await other.get(f"group/k{i}") == b"v"
    finally:
        await other.close()


async def test_updates_of_one_key_in_one_group_see_each_other(
    backend: SqliteBackend | PostgresBackend,
) -> None:
    await asyncio.gather(*(_write(backend, "group/counter", b"x") for _ in range(40)))
    assert await backend.get("group/counter") == b"x" * 40


async def test_a_transaction_that_raises_leaves_nothing_while_its_group_commits(
    backend: SqliteBackend | PostgresBackend,
) -> None:
    async def failing(i: int) -> None:
        async with backend.transaction() as tx:
            await tx.put(f"mixed/bad{i}", b"x")
            await tx.put("mixed/shared", b"bad")
            if i % 2:
                await tx.delete_prefix("mixed/none/")  # applies the writes early, under a savepoint
                assert await tx.list("mixed/") != []
            raise RuntimeError("abort")

    async def good(i: int) -> None:
        async with backend.transaction() as tx:
            await tx.put(f"mixed/good{i}", b"ok")

    outcomes = await asyncio.gather(
        *(failing(i) if i % 3 == 0 else good(i) for i in range(30)), return_exceptions=True
    )
    for i, outcome in enumerate(outcomes):
        if i % 3 == 0:
            assert isinstance(outcome, RuntimeError)
            assert await backend.get(f"mixed/bad{i}") is None
        else:
            assert outcome is None
            assert await backend.get(f"mixed/good{i}") == b"ok"
    assert await backend.get("mixed/shared") is None


async def test_a_transaction_reads_its_buffered_writes_and_lists_them(
    backend: SqliteBackend | PostgresBackend,
) -> None:
    async with backend.transaction() as tx:
        await tx.put("buffered/a", b"1")
        assert await tx.get("buffered/a") == b"1"
        assert await tx.get("buffered/a", for_update=True) == b"1"
        await tx.delete("buffered/a")
        assert await tx.get("buffered/a") is None
        await tx.put("buffered/b", b"2")
        assert await tx.list("buffered/") == ["b"]
    assert await backend.get("buffered/b") == b"2"
    assert await backend.get("buffered/a") is None


@pytest.mark.postgres
async def test_a_database_failure_inside_a_group_fails_every_member(
    postgres_url: str,  # noqa: F811 - the fixture imported above
) -> None:
    database = create_database(postgres_url)
    backend = PostgresBackend(database, pool_min=1, pool_max=8)
    await backend.open()
    first_done = asyncio.Event()
    try:

        async def first() -> None:
            async with backend.transaction() as tx:
                # waits for the server while second() queues for the same key, so the same lane
                await tx.get("broken/shared", for_update=True)
                await tx.put("broken/first", b"1")
            first_done.set()

        async def second() -> None:
            async with backend.transaction() as tx:
                await tx.get("broken/shared", for_update=True)  # in first()'s group, now open
                with psycopg.connect(database, autocommit=True) as admin:
                    killed = admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
                    ).fetchall()
                assert killed and all(row[0] for row in killed)
                await tx.get("broken/second")

        # the first ends while the second waits for the slot: they share one group
        results = await asyncio.gather(first(), second(), return_exceptions=True)
        assert all(isinstance(r, StorageError) for r in results), results
        assert not first_done.is_set()
        assert await backend.get("broken/first") is None
        await _write(backend, "broken/after", b"ok")  # the next group works
        assert await backend.get("broken/after") == b"ok"
    finally:
        await backend.close()
