"""Leases on a real SQLite file: issue, renew, revoke (with tokens), expiry through timers, tidy.

The issuing engine is a small recording :class:`LeaseHolder` (the database
engine itself is tested against a real PostgreSQL in the integration tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kustos.errors import InvalidRequestError
from kustos.keys.providers.local import LocalKeyProvider
from kustos.server.barrier import Barrier
from kustos.server.events import ChangeHub
from kustos.server.leases import LEASE_PREFIX, Lease, LeaseManager, validate_lease_id
from kustos.server.mounts import MountEntry, MountTable
from kustos.server.timers import Timers
from kustos.server.tokens import TokenStore
from kustos.store import SqliteBackend
from tests.unit.server.conftest import FakeClock


@dataclass
class Holder:
    """Records what it was asked to undo; ``fail`` makes revocation raise."""

    revoked: list[str] = field(default_factory=list)
    renewed: list[tuple[str, float]] = field(default_factory=list)
    fail: bool = False

    async def revoke_lease(self, mount: MountEntry, lease: Lease) -> None:
        if self.fail:
            raise RuntimeError("database unreachable")
        self.revoked.append(str(lease.internal["username"]))

    async def renew_lease(self, mount: MountEntry, lease: Lease, expire_time: float) -> None:
        self.renewed.append((str(lease.internal["username"]), expire_time))


@dataclass
class World:
    leases: LeaseManager
    holder: Holder
    tokens: TokenStore
    timers: Timers
    events: ChangeHub
    mount: MountEntry
    storage: SqliteBackend


@pytest.fixture
async def world(storage: SqliteBackend, clock: FakeClock, tmp_path: Path) -> World:
    barrier = Barrier(storage=storage, provider=LocalKeyProvider(tmp_path / "k.key"), clock=clock)
    await barrier.initialize(secret_shares=1, secret_threshold=1)
    mounts = MountTable(storage=storage, clock=clock)
    mount = await mounts.enable("fake/", type="fake")
    events = ChangeHub(clock=clock)
    tokens = TokenStore(storage=storage, clock=clock)
    timers = Timers(storage=storage, clock=clock)
    holder = Holder()
    leases = LeaseManager(
        storage=storage,
        barrier=barrier,
        clock=clock,
        timers=timers,
        mounts=mounts,
        events=events,
        tokens=tokens,
        holders={"fake": holder},
    )
    return World(leases, holder, tokens, timers, events, mount, storage)


async def _issue(world: World, user: str, *, ttl: float = 60, token: object = None) -> Lease:
    path = "fake/creds/app"
    return await world.leases.issue(
        lease_id=world.leases.new_lease_id(path),
        mount=world.mount,
        path=path,
        ttl=ttl,
        max_ttl=600,
        token=token,  # type: ignore[arg-type]
        internal={"username": user},
    )


async def test_issue_lookup_and_revoke_publishes_an_event(world: World) -> None:
    lease = await _issue(world, "u1")
    assert lease.lease_id.startswith("fake/creds/app/") and len(lease.lease_id) == 39
    assert await world.leases.lookup(lease.lease_id) == lease
    raw = await world.storage.get(LEASE_PREFIX + lease.lease_id)
    assert raw is not None and b"u1" not in raw  # encrypted at rest
    subscription = world.events.subscribe(mount="fake/", prefix="creds/")
    assert await world.leases.revoke(lease.lease_id) is True
    assert world.holder.revoked == ["u1"]
    assert await world.leases.lookup(lease.lease_id) is None
    assert await world.leases.revoke(lease.lease_id) is False
    changes = await subscription.next(timeout=1)
    assert changes is not None
    assert changes[0].document()["lease_id"] == lease.lease_id
    assert changes[0].kind == "revoke" and changes[0].path == "creds/app"


async def test_expiry_through_timers_and_renewal_moves_it(world: World, clock: FakeClock) -> None:
    short = await _issue(world, "short", ttl=10)
    renewed = await _issue(world, "renewed", ttl=10)
    clock.advance(5)
    after = await world.leases.renew(renewed.lease_id, increment=100)
    assert after.expire_time == clock.now + 100
    assert world.holder.renewed == [("renewed", clock.now + 100)]
    clock.advance(5)
    await world.timers.run_due()
    assert world.holder.revoked == ["short"]
    clock.advance(99)
    await world.timers.run_due()
    assert world.holder.revoked == ["short", "renewed"]
    assert await world.leases.lookup(short.lease_id) is None


async def test_renewal_is_capped_by_max_ttl(world: World, clock: FakeClock) -> None:
    lease = await _issue(world, "u", ttl=60)
    clock.advance(50)
    renewed = await world.leases.renew(lease.lease_id, increment=3600)
    assert renewed.expire_time == lease.issue_time + 600
    clock.advance(560)
    with pytest.raises(InvalidRequestError, match="expired"):
        await world.leases.renew(lease.lease_id, increment=10)


async def test_a_failed_revocation_keeps_the_lease_unless_forced(world: World) -> None:
    lease = await _issue(world, "u")
    world.holder.fail = True
    with pytest.raises(RuntimeError):
        await world.leases.revoke(lease.lease_id)
    assert await world.leases.lookup(lease.lease_id) is not None
    assert await world.leases.revoke_prefix("fake/creds", force=True) == 1
    assert await world.leases.lookup(lease.lease_id) is None


async def test_revoking_a_token_revokes_its_and_its_childrens_leases(
    world: World, clock: FakeClock
) -> None:
    _, parent = await world.tokens.create(policies=["default"], ttl=3600)
    _, child = await world.tokens.create(policies=["default"], ttl=3600, parent=parent)
    _, other = await world.tokens.create(policies=["default"], ttl=3600)
    await _issue(world, "parent", token=parent)
    await _issue(world, "child", token=child)
    kept = await _issue(world, "other", token=other)
    await world.tokens.revoke(parent)
    assert sorted(world.holder.revoked) == ["child", "parent"]
    assert await world.leases.lookup(kept.lease_id) is not None


async def test_a_token_that_expires_takes_its_leases(world: World, clock: FakeClock) -> None:
    _, token = await world.tokens.create(policies=["default"], ttl=30)
    lease = await _issue(world, "u", ttl=300, token=token)
    clock.advance(31)
    await world.timers.run_due()
    assert world.holder.revoked == ["u"]
    assert await world.leases.lookup(lease.lease_id) is None
    assert await world.tokens.entry_by_hash(token.id_hash) is None


async def test_list_and_tidy(world: World) -> None:
    _, token = await world.tokens.create(policies=["default"], ttl=3600)
    one = await _issue(world, "one", token=token)
    assert await world.leases.list_ids("fake/creds/app") == [one.lease_id.rsplit("/", 1)[1]]
    assert await world.leases.list_ids("fake/") == ["creds/"]
    # the token disappears without its revocation hook (a crash between the two)
    async with world.storage.transaction() as tx:
        await tx.delete(f"auth/token/id/{token.id_hash}")
    report = await world.leases.tidy()
    assert report.orphaned_leases_revoked == 1
    assert world.holder.revoked == ["one"]


@pytest.mark.parametrize("bad", ["", "../x", "a//b", "/abs", "a b", 5, None, "x" * 600])
def test_bad_lease_ids(bad: object) -> None:
    with pytest.raises(InvalidRequestError):
        validate_lease_id(bad)
