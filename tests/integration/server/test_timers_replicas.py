"""Durable timers on one PostgreSQL shared by two replicas: each timer fires once, and the other takes over.

Two :class:`Timers` runners, each on its own :class:`PostgresBackend` of the
same database (as two ``kustos server`` processes would be), compete for the
advisory lock ``kustos:timers``: one runs every due timer exactly once; when
it stops (its lock connection closes, as when a replica dies), the other
takes the lock and runs what falls due next.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from kustos.server.timers import Timers
from kustos.store.backends.postgresql import PostgresBackend
from tests.support.postgres import create_database, postgres_url  # noqa: F401

pytestmark = pytest.mark.postgres

_WAIT = 20.0


@pytest.fixture
async def backends(postgres_url: str) -> AsyncIterator[tuple[PostgresBackend, PostgresBackend]]:  # noqa: F811
    url = create_database(postgres_url)
    a, b = PostgresBackend(url, pool_max=4), PostgresBackend(url, pool_max=4)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def _until(check: object, *, what: str) -> None:
    deadline = time.monotonic() + _WAIT
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"not within {_WAIT} s: {what}")
        await asyncio.sleep(0.05)


async def test_each_timer_fires_once_and_the_other_replica_takes_over(
    backends: tuple[PostgresBackend, PostgresBackend],
) -> None:
    fired: Counter[str] = Counter()
    runners = []
    for backend in backends:
        timers = Timers(storage=backend, clock=time.time, poll=0.2, lock_retry=0.2)

        async def handler(ref: str) -> float | None:
            fired[ref] += 1
            await asyncio.sleep(0.01)
            return None

        timers.register("job", handler)
        runners.append(timers)
    first, second = runners
    async with backends[0].transaction() as tx:
        for n in range(40):
            await first.schedule(tx, time.time() - 1, "job", f"due-{n}")
    for timers in runners:
        timers.start()
    try:
        await _until(lambda: first.fired + second.fired == 40, what="every due timer fired")
        await asyncio.sleep(0.5)  # a second runner, if it ran them too, would have by now
        assert set(fired.values()) == {1}
        assert [t.leader for t in runners].count(True) == 1
        leader, other = (first, second) if first.leader else (second, first)
        assert leader.fired == 40 and other.fired == 0

        await leader.stop()  # its lock connection closes, like a replica that dies
        async with backends[0].transaction() as tx:
            await leader.schedule(tx, time.time() + 0.5, "job", "after-takeover")
        await _until(lambda: other.fired == 1, what="the other replica took over")
        assert other.leader and fired["after-takeover"] == 1
    finally:
        for timers in runners:
            await timers.stop()
