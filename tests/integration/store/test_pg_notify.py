"""PostgreSQL change notifications: commits announce their keys to every backend on the database.

Two backends on one fresh database stand for two server replicas. Waits use
generous timeouts and never assert on elapsed time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest

from kustos.store import PostgresBackend
from kustos.store.backends.postgresql import LISTENER_APPLICATION_NAME
from kustos.store.changes import Changes, supports_change_watching
from tests.support.postgres import create_database, postgres_url  # noqa: F401

pytestmark = pytest.mark.postgres

_WAIT = 20.0


class Recorder:
    """Collects the events a subscriber receives and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[Changes] = []
        self._changed = asyncio.Event()

    def __call__(self, changes: Changes) -> None:
        self.events.append(changes)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[Changes], bool], *, start: int = 0) -> Changes:
        """The first event from index ``start`` on that satisfies ``predicate``."""

        async def scan() -> Changes:
            seen = start
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(scan(), _WAIT)


@pytest.fixture
async def database(postgres_url: str) -> str:  # noqa: F811
    return create_database(postgres_url)


@pytest.fixture
async def pair(database: str) -> AsyncIterator[tuple[PostgresBackend, PostgresBackend]]:
    a = PostgresBackend(database, pool_max=4, heartbeat=0.5, connect_timeout=5.0)
    b = PostgresBackend(database, pool_max=4, heartbeat=0.5, connect_timeout=5.0)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_postgres_backend_offers_change_watching(
    pair: tuple[PostgresBackend, PostgresBackend],
) -> None:
    assert supports_change_watching(pair[0])


async def test_first_event_flushes_and_reports_the_listener_state(
    pair: tuple[PostgresBackend, PostgresBackend],
) -> None:
    _, b = pair
    seen = Recorder()
    await b.watch_changes(seen)
    assert seen.events[0].everything
    await seen.wait_for(lambda e: e.watching and e.everything)
    assert b.watching


async def test_a_commit_on_one_backend_is_announced_to_the_other(
    pair: tuple[PostgresBackend, PostgresBackend],
) -> None:
    a, b = pair
    seen = Recorder()
    await b.watch_changes(seen)
    await seen.wait_for(lambda e: e.watching)
    async with a.transaction() as tx:
        await tx.put("kv/m/data/app/1", b"v1")
        await tx.put("kv/m/meta/app", b"m")
    event = await seen.wait_for(lambda e: bool(e.keys))
    assert event.keys == {"kv/m/data/app/1", "kv/m/meta/app"}
    assert event.watching and not event.everything
    assert event.touches("kv/m/meta/app") and not event.touches("kv/m/meta/other")

    async with a.transaction() as tx:
        await tx.delete("kv/m/data/app/1")
    event = await seen.wait_for(lambda e: "kv/m/data/app/1" in e.keys and len(e.keys) == 1)
    assert event.keys == {"kv/m/data/app/1"}


async def test_delete_prefix_is_announced_as_a_prefix(
    pair: tuple[PostgresBackend, PostgresBackend],
) -> None:
    a, b = pair
    async with a.transaction() as tx:
        await tx.put("kv/m/data/x/1", b"1")
        await tx.put("kv/m/data/x/2", b"2")
    seen = Recorder()
    await b.watch_changes(seen)
    await seen.wait_for(lambda e: e.watching)
    async with a.transaction() as tx:
        assert await tx.delete_prefix("kv/m/data/x/") == 2
    event = await seen.wait_for(lambda e: bool(e.prefixes))
    assert event.prefixes == ("kv/m/data/x/",)
    assert event.touches("kv/m/data/x/1") and not event.touches("kv/m/data/y/1")


async def test_a_rolled_back_transaction_announces_nothing(
    pair: tuple[PostgresBackend, PostgresBackend],
) -> None:
    a, b = pair
    seen = Recorder()
    await b.watch_changes(seen)
    await seen.wait_for(lambda e: e.watching)
    with pytest.raises(RuntimeError):
        async with a.transaction() as tx:
            await tx.put("rolled/back", b"x")
            raise RuntimeError("abort")
    async with a.transaction() as tx:
        await tx.put("committed", b"y")
    await seen.wait_for(lambda e: "committed" in e.keys)
    assert not any("rolled/back" in e.keys for e in seen.events)
    assert await b.get("rolled/back") is None


async def test_too_many_keys_for_one_payload_are_split_over_several_notifications(
    pair: tuple[PostgresBackend, PostgresBackend],
) -> None:
    a, b = pair
    seen = Recorder()
    await b.watch_changes(seen)
    await seen.wait_for(lambda e: e.watching)
    count = len(seen.events)
    names = {f"kv/m/data/bulk/{i:04d}-{'x' * 20}" for i in range(400)}
    async with a.transaction() as tx:
        for name in names:
            await tx.put(name, b"v")
    heard: set[str] = set()

    def covers_all(event: Changes) -> bool:
        heard.update(event.keys)
        return heard >= names

    await seen.wait_for(covers_all, start=count)
    chunks = [e for e in seen.events[count:] if e.keys]
    assert len(chunks) > 1  # 400 keys of ~40 bytes do not fit one 8,000-byte payload
    assert not any(e.everything for e in seen.events[count:])
    assert await b.get("kv/m/data/bulk/0399-" + "x" * 20) == b"v"


async def test_an_announcement_too_large_for_a_notification_becomes_forget_everything(
    pair: tuple[PostgresBackend, PostgresBackend],
) -> None:
    a, b = pair
    seen = Recorder()
    await b.watch_changes(seen)
    await seen.wait_for(lambda e: e.watching)
    count = len(seen.events)
    async with a.transaction() as tx:
        await tx.put("big/announcement", b"v")
        tx.announce("test", {"blob": "y" * 9000})
    event = await seen.wait_for(lambda e: e.everything, start=count)
    assert event.watching and not event.announcements


async def test_announcements_reach_every_process_and_name_their_origin(
    pair: tuple[PostgresBackend, PostgresBackend],
) -> None:
    a, b = pair
    on_a, on_b = Recorder(), Recorder()
    await a.watch_changes(on_a)
    await b.watch_changes(on_b)
    await on_a.wait_for(lambda e: e.watching)
    await on_b.wait_for(lambda e: e.watching)
    async with a.transaction() as tx:
        await tx.put("announced/key", b"1")
        tx.announce("kv", {"mount": "secret/", "path": "app", "version": 1})
        tx.announce("leases", {"id": "database/creds/r/abc"})
    with pytest.raises(RuntimeError):
        async with a.transaction() as tx:
            tx.announce("kv", {"mount": "secret/", "path": "rolled-back", "version": 1})
            raise RuntimeError("abort")
    remote = await on_b.wait_for(lambda e: bool(e.announcements))
    local = await on_a.wait_for(lambda e: bool(e.announcements))
    assert [(x.topic, dict(x.document)) for x in remote.announcements] == [
        ("kv", {"mount": "secret/", "path": "app", "version": 1}),
        ("leases", {"id": "database/creds/r/abc"}),
    ]
    assert not remote.local and local.local
    assert local.announcements == remote.announcements
    assert remote.keys == {"announced/key"}
    async with a.transaction() as tx:
        await tx.put("after/rollback", b"1")
    await on_b.wait_for(lambda e: "after/rollback" in e.keys)
    assert not any(
        x.document.get("path") == "rolled-back" for e in on_b.events for x in e.announcements
    )


async def test_a_killed_listener_reports_unsafe_then_recovers(
    pair: tuple[PostgresBackend, PostgresBackend], database: str
) -> None:
    a, b = pair
    seen = Recorder()
    await b.watch_changes(seen)
    await seen.wait_for(lambda e: e.watching)
    with psycopg.connect(database, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            (LISTENER_APPLICATION_NAME,),
        ).fetchall()
    assert rows and all(r[0] for r in rows)
    count = len(seen.events)
    down = await seen.wait_for(lambda e: not e.watching, start=count)
    assert down.everything
    after = next(i for i in range(count, len(seen.events)) if seen.events[i] is down)
    await seen.wait_for(lambda e: e.watching and e.everything, start=after + 1)
    assert b.watching
    async with a.transaction() as tx:
        await tx.put("after/reconnect", b"1")
    await seen.wait_for(lambda e: "after/reconnect" in e.keys)


async def test_unsubscribe_stops_delivery_and_close_stops_the_listener(
    pair: tuple[PostgresBackend, PostgresBackend],
) -> None:
    a, b = pair
    first, second = Recorder(), Recorder()
    stop = await b.watch_changes(first)
    await b.watch_changes(second)
    await second.wait_for(lambda e: e.watching)
    stop()
    async with a.transaction() as tx:
        await tx.put("only/second", b"1")
    await second.wait_for(lambda e: "only/second" in e.keys)
    assert not any("only/second" in e.keys for e in first.events)
    await b.close()
    assert not b.watching
