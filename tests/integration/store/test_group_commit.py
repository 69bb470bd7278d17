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


def _held_elsewhere(database: str, keys: list[str]) -> set[str]:
    """The keys whose advisory lock (as ``for_update`` takes it) another session holds now."""
    with psycopg.connect(database) as admin:  # one transaction, rolled back: takes nothing for good
        return {
            key
            for key in keys
            if not admin.execute(
                "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", (key,)
            ).fetchone()[0]  # type: ignore[index]
        }


@pytest.mark.postgres
async def test_keys_locked_ahead_for_waiting_transactions_stay_locked_until_used(
    postgres_url: str,  # noqa: F811 - the fixture imported above
) -> None:
    """A group locks (and reads) the keys its waiting transactions will lock, in one round trip.

    The first transaction holds its lane's slot while the others queue behind
    it: their keys get locked ahead. Each waiter's key is locked while it
    runs, and every increment lands.
    """
    database = create_database(postgres_url)
    backend = PostgresBackend(database, pool_min=1, pool_max=8)  # several lanes
    await backend.open()
    gate = asyncio.Event()
    started = asyncio.Event()
    ran: set[str] = set()
    locked_while_running: dict[str, bool] = {}
    keys = [f"ahead/k{i}" for i in range(30)]
    try:

        async def first() -> None:
            async with backend.transaction() as tx:
                await tx.get("ahead/first", for_update=True)  # the others queue meanwhile
                started.set()
                await tx.get("ahead/first/second", for_update=True)  # locks theirs ahead
                await gate.wait()
                await tx.put("ahead/first", b"1")

        async def waiter(key: str) -> None:
            async with backend.transaction() as tx:
                current = await tx.get(key, for_update=True)
                ran.add(key)
                await tx.get(key + "/plain")  # a round trip: whatever the group queued is sent
                held = await asyncio.to_thread(_held_elsewhere, database, [key])
                locked_while_running[key] = key in held
                await tx.put(key, str(int(current or b"0") + 1).encode())

        tasks = [asyncio.ensure_future(first())]
        tasks += [asyncio.ensure_future(waiter(key)) for key in keys]
        await started.wait()
        await asyncio.sleep(0.2)  # the first transaction's second read has been answered
        held = await asyncio.to_thread(_held_elsewhere, database, keys)
        held_ahead = held - ran  # locked, but their transactions have not read them yet
        gate.set()
        assert not [r for r in await asyncio.gather(*tasks, return_exceptions=True) if r]
        assert held_ahead  # some waiters' keys were locked before they ran
        assert sorted(locked_while_running) == sorted(keys)
        assert all(locked_while_running.values()), locked_while_running
        for key in keys:
            assert await backend.get(key) == b"1", key
    finally:
        await backend.close()


@pytest.mark.postgres
async def test_a_lock_released_by_a_rollback_to_savepoint_is_taken_again(
    postgres_url: str,  # noqa: F811 - the fixture imported above
) -> None:
    """A transaction that raises after a savepoint releases the locks it took since.

    The next transaction of the same group that locks the same key must lock
    it again (not trust the group's memory of it). One lane, so the two share
    a group unless the first one's group is already older than its limit.
    """
    database = create_database(postgres_url)
    backend = PostgresBackend(database, pool_min=1, pool_max=4)  # one lane
    await backend.open()

    async def first(key: str, locked: asyncio.Event) -> None:
        async with backend.transaction() as tx:
            await tx.put(key + "/scratch", b"1")
            await tx.list(key + "/")  # applies the write under a savepoint
            await tx.get(key, for_update=True)
            locked.set()
            for _ in range(3):
                await asyncio.sleep(0)  # second() queues for the slot
            raise RuntimeError("abort")

    async def second(key: str, locked: asyncio.Event) -> bool:
        await locked.wait()
        async with backend.transaction() as tx:
            await tx.get(key, for_update=True)
            await tx.get(key + "/plain")  # a round trip: whatever the group queued is sent
            held = await asyncio.to_thread(_held_elsewhere, database, [key])
            await tx.put(key, b"2")
        return key in held

    try:
        for attempt in range(5):
            key, locked = f"again/{attempt}", asyncio.Event()
            outcomes = await asyncio.gather(
                first(key, locked), second(key, locked), return_exceptions=True
            )
            assert isinstance(outcomes[0], RuntimeError) and outcomes[1] is True, outcomes
            assert await backend.get(key) == b"2"
            assert await backend.get(key + "/scratch") is None
    finally:
        await backend.close()
