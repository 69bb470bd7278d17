"""Durable timers on a real SQLite file with a clock the test moves: order, rescheduling, retries."""

from __future__ import annotations

import pytest

from kustos.server.timers import TIMERS_PREFIX, Timers, parse_timer_key, timer_key
from kustos.store import SqliteBackend
from tests.unit.server.conftest import FakeClock


def test_keys_sort_by_due_time_and_parse_back() -> None:
    early = timer_key(1_700_000_000.5, "lease", "database/creds/app/x")
    late = timer_key(1_800_000_000.0, "lease", "a")
    assert early < late
    assert parse_timer_key(early) == (1_700_000_000.5, "lease", "database/creds/app/x")
    assert parse_timer_key("sys/timers/12/lease/x") is None
    assert parse_timer_key("other/key") is None
    with pytest.raises(ValueError, match="invalid timer kind"):
        timer_key(1.0, "Bad Kind", "x")


async def _keys(storage: SqliteBackend) -> list[str]:
    return [key async for key, _ in storage.scan(TIMERS_PREFIX)]


async def test_due_timers_fire_in_order_and_return_the_next(
    storage: SqliteBackend, clock: FakeClock
) -> None:
    timers = Timers(storage=storage, clock=clock)
    fired: list[str] = []

    async def handler(ref: str) -> float | None:
        fired.append(ref)
        return None

    timers.register("job", handler)
    async with storage.transaction() as tx:
        await timers.schedule(tx, clock.now + 20, "job", "third")
        await timers.schedule(tx, clock.now + 5, "job", "first")
        await timers.schedule(tx, clock.now + 10, "job", "second/with/slashes")
    assert await timers.run_due() == clock.now + 5
    assert fired == []
    clock.advance(10)
    assert await timers.run_due() == clock.now + 10
    assert fired == ["first", "second/with/slashes"]
    clock.advance(100)
    assert await timers.run_due() is None
    assert fired == ["first", "second/with/slashes", "third"]
    assert await _keys(storage) == []


async def test_a_handler_reschedules_and_a_failure_retries_later(
    storage: SqliteBackend, clock: FakeClock
) -> None:
    timers = Timers(storage=storage, clock=clock)
    calls: list[str] = []

    async def again(ref: str) -> float | None:
        calls.append(ref)
        return clock.now + 60 if len(calls) == 1 else None

    async def broken(ref: str) -> float | None:
        raise RuntimeError("database down")

    timers.register("again", again)
    timers.register("broken", broken)
    async with storage.transaction() as tx:
        await timers.schedule(tx, clock.now, "again", "a")
        await timers.schedule(tx, clock.now, "broken", "b")
    await timers.run_due()
    keys = await _keys(storage)
    assert [parse_timer_key(k) for k in keys] == [
        (clock.now + 2.0, "broken", "b"),
        (clock.now + 60, "again", "a"),
    ]
    clock.advance(2)
    await timers.run_due()  # fails again: the delay doubles
    assert parse_timer_key((await _keys(storage))[0]) == (clock.now + 4.0, "broken", "b")
    clock.advance(60)
    await timers.run_due()
    assert calls == ["a", "a"]


async def test_cancel_and_unknown_kinds(storage: SqliteBackend, clock: FakeClock) -> None:
    timers = Timers(storage=storage, clock=clock)
    async with storage.transaction() as tx:
        await timers.schedule(tx, clock.now + 1, "gone", "x")
        await timers.schedule(tx, clock.now + 1, "kept", "y")
        await Timers.cancel(tx, clock.now + 1, "kept", "y")
    clock.advance(1)
    await timers.run_due()  # no handler for "gone": dropped, not retried forever
    assert await _keys(storage) == []
    with pytest.raises(ValueError, match="duplicate"):
        timers.register("k", lambda ref: None)  # type: ignore[arg-type,return-value]
        timers.register("k", lambda ref: None)  # type: ignore[arg-type,return-value]
