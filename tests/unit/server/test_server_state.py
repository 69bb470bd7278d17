"""Token store, barrier, mount table and read cache against a real SQLite file and a fake clock."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from kustos.crypto.envelope import Keyring, context
from kustos.errors import DecryptionError, InvalidRequestError, KeyProviderError, SealedError
from kustos.keys.providers.local import LocalKeyProvider
from kustos.keys.providers.shamir import ShamirKeyProvider
from kustos.server.barrier import KEYRING_KEY, Barrier, CiphertextFamily
from kustos.server.caching import RecordCache
from kustos.server.mounts import MOUNTS_KEY, MountEntry, MountTable
from kustos.server.tokens import DEFAULT_TTL, MAX_TTL, TokenStore
from kustos.store import SqliteBackend
from tests.unit.server.conftest import FakeClock

# -- tokens -------------------------------------------------------------------------------


async def test_token_is_stored_as_hash_and_expires(
    storage: SqliteBackend, clock: FakeClock
) -> None:
    tokens = TokenStore(storage=storage, clock=clock)
    token, entry = await tokens.create(policies=["default"], ttl=60)
    secret = token.reveal()
    assert secret.startswith("hvs.") and len(secret) == 36
    assert repr(token) == "Sensitive(<redacted>)"
    assert (
        await storage.get(f"auth/token/id/{hashlib.sha256(secret.encode()).hexdigest()}")
        is not None
    )
    async for key, value in storage.scan(""):
        assert secret not in key and secret.encode() not in value
    assert (await tokens.lookup(secret)) == entry
    clock.advance(59)
    assert await tokens.lookup(secret) is not None
    clock.advance(1)
    assert await tokens.lookup(secret) is None
    assert await tokens.lookup(secret + "x") is None
    assert await tokens.lookup("") is None


async def test_token_ttls(storage: SqliteBackend, clock: FakeClock) -> None:
    tokens = TokenStore(storage=storage, clock=clock)
    _, root = await tokens.create(policies=["root"])
    assert root.ttl == 0 and root.expire_time is None and not root.renewable
    _, plain = await tokens.create(policies=["default"])
    assert plain.ttl == DEFAULT_TTL
    _, capped = await tokens.create(policies=["default"], ttl=10 * MAX_TTL)
    assert capped.ttl == MAX_TTL
    _, bounded = await tokens.create(policies=["default"], ttl=600, explicit_max_ttl=300)
    assert bounded.ttl == 300


async def test_renew_respects_explicit_max_ttl(storage: SqliteBackend, clock: FakeClock) -> None:
    tokens = TokenStore(storage=storage, clock=clock)
    token, entry = await tokens.create(policies=["default"], ttl=100, explicit_max_ttl=250)
    clock.advance(90)
    renewed = await tokens.renew(entry, increment=100)
    assert renewed.expire_time == clock.now + 100
    clock.advance(90)
    again = await tokens.renew(renewed, increment=1000)
    assert again.expire_time == entry.creation_time + 250
    assert (await tokens.lookup(token.reveal())) == again
    _, fixed = await tokens.create(policies=["default"], ttl=100, renewable=False)
    with pytest.raises(InvalidRequestError, match="not renewable"):
        await tokens.renew(fixed, increment=10)


async def test_revoke_cascades_to_children_not_orphans(
    storage: SqliteBackend, clock: FakeClock
) -> None:
    tokens = TokenStore(storage=storage, clock=clock)
    parent_token, parent = await tokens.create(policies=["root"], ttl=3600)
    child_token, child = await tokens.create(policies=["default"], parent=parent)
    grandchild_token, _ = await tokens.create(policies=["default"], parent=child)
    orphan_token, _ = await tokens.create(policies=["default"], parent=parent, orphan=True)
    for t in (parent_token, child_token, grandchild_token, orphan_token):
        assert await tokens.lookup(t.reveal()) is not None  # also fills the cache
    assert await tokens.revoke(parent) == 3
    for t in (parent_token, child_token, grandchild_token):
        assert await tokens.lookup(t.reveal()) is None
    assert await tokens.lookup(orphan_token.reveal()) is not None
    assert await storage.list("auth/token/parent/") == []


async def test_custom_token_ids(storage: SqliteBackend, clock: FakeClock) -> None:
    tokens = TokenStore(storage=storage, clock=clock)
    await tokens.create(policies=["root"], token_id="dev-root")
    assert await tokens.lookup("dev-root") is not None
    with pytest.raises(InvalidRequestError, match="already exists"):
        await tokens.create(policies=["root"], token_id="dev-root")
    with pytest.raises(InvalidRequestError, match="token id must be"):
        await tokens.create(policies=["root"], token_id="has space")


async def test_accessor_lookup(storage: SqliteBackend, clock: FakeClock) -> None:
    tokens = TokenStore(storage=storage, clock=clock)
    _, entry = await tokens.create(policies=["default"])
    assert await tokens.lookup_accessor(entry.accessor) == entry
    assert await tokens.lookup_accessor("nope") is None
    assert await tokens.lookup_accessor("../x") is None


# -- barrier ------------------------------------------------------------------------------


def _local(tmp_path: Path) -> LocalKeyProvider:
    return LocalKeyProvider(tmp_path / "kustos.key")


async def test_barrier_init_encrypt_and_auto_unseal(
    storage: SqliteBackend, clock: FakeClock, tmp_path: Path
) -> None:
    barrier = Barrier(storage=storage, provider=_local(tmp_path), clock=clock)
    await barrier.load()
    assert not barrier.initialized and barrier.sealed
    with pytest.raises(SealedError):
        barrier.encrypt(b"x", context=b"c")
    assert await barrier.initialize(secret_shares=1, secret_threshold=1) == []
    assert barrier.initialized and not barrier.sealed
    blob = barrier.encrypt(b"value", context=b"here")
    assert await barrier.decrypt(blob, context=b"here") == b"value"
    with pytest.raises(DecryptionError):
        await barrier.decrypt(blob, context=b"there")
    with pytest.raises(InvalidRequestError, match="already initialized"):
        await barrier.initialize(secret_shares=1, secret_threshold=1)
    stored = await storage.get(KEYRING_KEY)
    assert stored is not None and b"kustos_keyring" not in stored  # wrapped, not plaintext

    again = Barrier(storage=storage, provider=_local(tmp_path), clock=clock)
    await again.load()
    assert again.initialized and not again.sealed
    assert await again.decrypt(blob, context=b"here") == b"value"
    again.seal()
    with pytest.raises(SealedError):
        await again.decrypt(blob, context=b"here")
    await again.unseal(key=None)
    assert await again.decrypt(blob, context=b"here") == b"value"


async def test_barrier_with_another_key_file_fails_closed(
    storage: SqliteBackend, clock: FakeClock, tmp_path: Path
) -> None:
    barrier = Barrier(storage=storage, provider=_local(tmp_path), clock=clock)
    await barrier.load()
    await barrier.initialize(secret_shares=1, secret_threshold=1)
    other = tmp_path / "other"
    other.mkdir()
    stranger = Barrier(
        storage=storage, provider=LocalKeyProvider(other / "kustos.key"), clock=clock
    )
    with pytest.raises(DecryptionError):
        await stranger.load()


async def test_shamir_barrier(storage: SqliteBackend, clock: FakeClock) -> None:
    barrier = Barrier(storage=storage, provider=ShamirKeyProvider(), clock=clock)
    await barrier.load()
    shares = await barrier.initialize(secret_shares=3, secret_threshold=2)
    assert len(shares) == 3 and barrier.sealed  # sealed after init, like Vault
    status = await barrier.unseal(key=shares[2])
    assert (status.sealed, status.progress, status.threshold, status.shares) == (True, 1, 2, 3)
    with pytest.raises(InvalidRequestError):
        await barrier.unseal(key=shares[2])
    assert barrier.status().progress == 1
    assert (await barrier.unseal(key=None, reset=True)).progress == 0
    await barrier.unseal(key=shares[0])
    assert not (await barrier.unseal(key=shares[1])).sealed
    blob = barrier.encrypt(b"v", context=b"c")

    restarted = Barrier(storage=storage, provider=ShamirKeyProvider(), clock=clock)
    await restarted.load()
    assert restarted.sealed and restarted.status().type == "shamir"
    with pytest.raises(InvalidRequestError, match="missing required parameter 'key'"):
        await restarted.unseal(key=None)
    await restarted.unseal(key=shares[1])
    await restarted.unseal(key=shares[2])
    assert await restarted.decrypt(blob, context=b"c") == b"v"


async def test_shamir_barrier_refuses_storage_of_another_provider(
    storage: SqliteBackend, clock: FakeClock, tmp_path: Path
) -> None:
    local = Barrier(storage=storage, provider=_local(tmp_path), clock=clock)
    await local.load()
    await local.initialize(secret_shares=1, secret_threshold=1)
    with pytest.raises(KeyProviderError, match="another key provider"):
        await Barrier(storage=storage, provider=ShamirKeyProvider(), clock=clock).load()


async def test_rotate_rewrap_disable(
    storage: SqliteBackend, clock: FakeClock, tmp_path: Path
) -> None:
    barrier = Barrier(storage=storage, provider=_local(tmp_path), clock=clock)
    await barrier.load()
    await barrier.initialize(secret_shares=1, secret_threshold=1)
    contexts = {f"data/{n}": context("t", n) for n in range(5)}
    async with storage.transaction() as tx:
        for key, ctx in contexts.items():
            await tx.put(key, barrier.encrypt(key.encode(), context=ctx))
        await tx.put("data/not-a-ciphertext", b"plain")
    family = CiphertextFamily.whole_records("data/", contexts.get)
    await barrier.rotate_key()
    assert barrier.active_version == 2
    assert await barrier.count_using([family], 1) == 5
    with pytest.raises(InvalidRequestError, match="still protects 5 stored records"):
        await barrier.disable_key_version(1, [family])
    invalidated: list[str] = []
    report = await barrier.rewrap([family], limit=2, invalidate=invalidated.extend)
    assert (report.rewrapped, report.remaining, report.scanned, report.failed) == (2, 3, 5, 0)
    assert len(invalidated) == 2
    report = await barrier.rewrap([family])
    assert (report.rewrapped, report.remaining) == (3, 0)
    await barrier.disable_key_version(1, [family])
    for key, ctx in contexts.items():
        blob = await storage.get(key)
        assert blob is not None and Keyring.key_version(blob) == 2
        assert await barrier.decrypt(blob, context=ctx) == key.encode()
    versions = [(v.version, v.disabled) for v in barrier.key_versions()]
    assert versions == [(1, True), (2, False)]


async def test_rewrap_counts_tampered_records_and_leaves_them(
    storage: SqliteBackend, clock: FakeClock, tmp_path: Path
) -> None:
    barrier = Barrier(storage=storage, provider=_local(tmp_path), clock=clock)
    await barrier.load()
    await barrier.initialize(secret_shares=1, secret_threshold=1)
    good = barrier.encrypt(b"good", context=b"g")
    bad = bytearray(barrier.encrypt(b"bad", context=b"b"))
    bad[-1] ^= 1
    async with storage.transaction() as tx:
        await tx.put("r/good", good)
        await tx.put("r/bad", bytes(bad))
    await barrier.rotate_key()
    family = CiphertextFamily.whole_records("r/", {"r/good": b"g", "r/bad": b"b"}.get)
    report = await barrier.rewrap([family])
    assert (report.rewrapped, report.failed) == (1, 1)
    assert await storage.get("r/bad") == bytes(bad)
    with pytest.raises(InvalidRequestError, match="still protects 1 stored records"):
        await barrier.disable_key_version(1, [family])


async def test_barrier_reloads_a_keyring_rotated_elsewhere(
    storage: SqliteBackend, clock: FakeClock, tmp_path: Path
) -> None:
    first = Barrier(storage=storage, provider=_local(tmp_path), clock=clock)
    await first.load()
    await first.initialize(secret_shares=1, secret_threshold=1)
    second = Barrier(storage=storage, provider=_local(tmp_path), clock=clock)
    await second.load()
    await first.rotate_key()
    blob = first.encrypt(b"new", context=b"c")
    assert Keyring.key_version(blob) == 2
    assert await second.decrypt(blob, context=b"c") == b"new"
    assert second.active_version == 2


# -- mounts ---------------------------------------------------------------------------------


async def test_mount_table(storage: SqliteBackend, clock: FakeClock) -> None:
    mounts = MountTable(storage=storage, clock=clock)
    await mounts.load()
    secret = await mounts.enable("secret", type="kv", options={"version": "2"})
    team = await mounts.enable("team/a", type="kv", options={"version": "2"})
    with pytest.raises(InvalidRequestError, match="already in use at team/a/"):
        await mounts.enable("team/a/b", type="kv")
    with pytest.raises(InvalidRequestError, match="already in use at team/a/"):
        await mounts.enable("team", type="kv")
    resolved = mounts.resolve("secret/data/app/db")
    assert resolved is not None and resolved[0] == secret and resolved[1] == "data/app/db"
    resolved = mounts.resolve("team/a/metadata/")
    assert resolved is not None and resolved[0] == team and resolved[1] == "metadata/"
    resolved = mounts.resolve("secret")
    assert resolved is not None and resolved == (secret, "")
    assert mounts.resolve("team/b/data/x") is None
    assert mounts.resolve("secrets/data/x") is None

    resolved = mounts.resolve("team/a")
    assert resolved == (team, "")
    assert mounts.resolve("") is None and mounts.resolve("team") is None

    async with storage.transaction() as tx:
        await tx.put(f"{team.storage_prefix}meta/x", b"{}")
    reloaded = MountTable(storage=storage, clock=clock)
    await reloaded.load()
    assert [m.path for m in reloaded.entries()] == ["secret/", "team/a/"]
    removed = await reloaded.disable("team/a/")
    assert removed == team
    assert await storage.get(f"{team.storage_prefix}meta/x") is None
    assert await reloaded.disable("team/a") is None

    outer, inner = (
        MountEntry(path="ops/", type="kv", uuid="u1", accessor="a1"),
        MountEntry(path="ops/deep/", type="kv", uuid="u2", accessor="a2"),
    )
    async with storage.transaction() as tx:
        await tx.put(
            MOUNTS_KEY,
            orjson.dumps({"v": 1, "mounts": {m.path: m.to_doc() for m in (outer, inner)}}),
        )
    nested = MountTable(storage=storage, clock=clock)
    await nested.load()
    assert nested.resolve("ops/deep/data/x") == (inner, "data/x")
    assert nested.resolve("ops/data/x") == (outer, "data/x")
    assert nested.resolve("ops/deep") == (inner, "")


# -- read cache -------------------------------------------------------------------------------


async def test_record_cache_invalidation(storage: SqliteBackend) -> None:
    cache = RecordCache(storage=storage, max_entries=10)
    async with storage.transaction() as tx:
        await tx.put("k", b"1")
    assert await cache.get("k", bytes) == b"1"
    async with storage.transaction() as tx:
        await tx.put("k", b"changed behind the cache")
    assert await cache.get("k", bytes) == b"1"  # cached: only writes through the cache invalidate
    async with cache.writing() as touched, storage.transaction() as tx:
        await tx.put("k", b"2")
        touched.append("k")
    assert await cache.get("k", bytes) == b"2"
    assert await cache.get("missing", bytes) is None


async def test_record_cache_does_not_keep_a_read_that_raced_a_write(storage: SqliteBackend) -> None:
    cache = RecordCache(storage=storage, max_entries=10)
    async with storage.transaction() as tx:
        await tx.put("k", b"old")
    async with cache.writing() as touched:
        assert await cache.get("k", bytes) == b"old"  # read while a write is in flight: not cached
        async with storage.transaction() as tx:
            await tx.put("k", b"new")
        touched.append("k")
    assert await cache.get("k", bytes) == b"new"


async def test_record_cache_bounds(storage: SqliteBackend) -> None:
    cache = RecordCache(storage=storage, max_entries=3, max_bytes=8 * 100)
    async with storage.transaction() as tx:
        for n in range(5):
            await tx.put(f"k{n}", bytes(50))
        await tx.put("big", bytes(200))
    for n in range(5):
        await cache.get(f"k{n}", bytes)
    await cache.get("big", bytes)  # larger than an eighth of the budget: never cached
    assert len(cache._data) == 3 and "big" not in cache._data
    disabled = RecordCache(storage=storage, max_entries=0)
    await disabled.get("k0", bytes)
    assert not disabled.enabled and disabled._data == {}


async def test_token_cache_ttl_for_shared_storage(storage: SqliteBackend, clock: FakeClock) -> None:
    here = TokenStore(storage=storage, clock=clock, cache_ttl=1.0)
    elsewhere = TokenStore(storage=storage, clock=clock, cache_ttl=1.0)
    token, _ = await here.create(policies=["default"])
    entry = await here.lookup(token.reveal())
    assert entry is not None
    assert await elsewhere.revoke(entry) == 1  # another replica revokes it
    assert await here.lookup(token.reveal()) is not None  # still within the cache TTL
    clock.advance(1.0)
    assert await here.lookup(token.reveal()) is None
    uncached = TokenStore(storage=storage, clock=clock, cache_ttl=0)
    other, other_entry = await uncached.create(policies=["default"])
    assert await uncached.lookup(other.reveal()) is not None
    await elsewhere.revoke(other_entry)
    assert await uncached.lookup(other.reveal()) is None
