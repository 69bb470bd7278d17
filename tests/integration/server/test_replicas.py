"""Two server replicas (two Cores) on one PostgreSQL database: read caches follow LISTEN/NOTIFY.

Replica B caches what it reads; every change made on replica A must reach
B's reads once A's notification arrives (the tests poll with a generous
timeout, never asserting on elapsed time), and while B's LISTEN connection
is down B must read from storage, never from its cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from kustos.config import KeyProviderConfig, ServerConfig, StorageConfig
from kustos.server import Core, create_app
from kustos.server.tokens import hash_token
from kustos.store.backends.postgresql import LISTENER_APPLICATION_NAME
from tests.support.postgres import create_database, postgres_url  # noqa: F401

pytestmark = pytest.mark.postgres

ROOT = "hvs.replica-root-token"
_WAIT = 20.0


@dataclass
class Replica:
    core: Core
    http: httpx.AsyncClient


@dataclass
class Pair:
    a: Replica
    b: Replica
    database: str


async def _replica(config: ServerConfig, *, bootstrap: bool) -> Replica:
    core = await Core.open(config)
    if bootstrap:
        await core.dev_bootstrap(root_token_id=ROOT)
    app = create_app(config, core=core)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://kustos",
        headers={"X-Vault-Token": ROOT},
    )
    return Replica(core=core, http=http)


@pytest.fixture
async def pair(postgres_url: str, tmp_path: Path) -> AsyncIterator[Pair]:  # noqa: F811
    database = create_database(postgres_url)
    config = ServerConfig(
        storage=StorageConfig(url=database, pool_min=4, pool_max=4),
        keys=KeyProviderConfig(kind="local", key_file=tmp_path / "kustos.key"),
        dev=True,
    )
    a = await _replica(config, bootstrap=True)
    b = await _replica(config, bootstrap=False)
    try:
        assert a.core.cache.enabled and b.core.cache.enabled
        await eventually(lambda: _true(not b.core.cache.bypassed))
        yield Pair(a=a, b=b, database=database)
    finally:
        for replica in (a, b):
            await replica.http.aclose()
            await replica.core.close()


async def _true(value: bool) -> bool:
    return value


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until it holds (fails after a generous timeout)."""

    async def loop() -> None:
        while not await check():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), _WAIT)


async def _read(replica: Replica, path: str, **params: str) -> tuple[int, object]:
    response = await replica.http.get(f"/v1/secret/data/{path}", params=params)
    body = response.json()
    return response.status_code, body.get("data", {}).get(
        "data"
    ) if response.status_code == 200 else None


async def _shows(
    replica: Replica, path: str, status: int, data: object = None, **params: str
) -> bool:
    return await _read(replica, path, **params) == (status, data)


async def test_a_write_on_one_replica_reaches_the_others_cached_read(pair: Pair) -> None:
    await pair.a.http.post("/v1/secret/data/app/db", json={"data": {"password": "one"}})
    assert await _read(pair.b, "app/db") == (200, {"password": "one"})
    assert await _read(pair.b, "app/db") == (200, {"password": "one"})  # now from B's cache
    await pair.a.http.post("/v1/secret/data/app/db", json={"data": {"password": "two"}})
    await eventually(lambda: _shows(pair.b, "app/db", 200, {"password": "two"}))
    # B's own write invalidates B (locally) and A (by notification)
    await pair.b.http.post("/v1/secret/data/app/db", json={"data": {"password": "three"}})
    assert await _read(pair.b, "app/db") == (200, {"password": "three"})
    await eventually(lambda: _shows(pair.a, "app/db", 200, {"password": "three"}))


async def test_delete_destroy_and_metadata_delete_propagate(pair: Pair) -> None:
    a, b = pair.a, pair.b
    await a.http.post("/v1/secret/data/gone", json={"data": {"k": "v1"}})
    await a.http.post("/v1/secret/data/gone", json={"data": {"k": "v2"}})
    assert await _read(b, "gone") == (200, {"k": "v2"})
    assert await _read(b, "gone", version="1") == (200, {"k": "v1"})

    assert (
        await a.http.delete("/v1/secret/data/gone")
    ).status_code == 204  # soft-delete the latest
    await eventually(lambda: _shows(b, "gone", 404))

    assert (await a.http.put("/v1/secret/destroy/gone", json={"versions": [1]})).status_code == 204
    await eventually(lambda: _shows(b, "gone", 404, version="1"))

    await a.http.post("/v1/secret/data/other", json={"data": {"k": "x"}})
    assert await _read(b, "other") == (200, {"k": "x"})
    assert (await a.http.delete("/v1/secret/metadata/other")).status_code == 204
    await eventually(lambda: _shows(b, "other", 404))


async def test_a_token_revoked_on_one_replica_stops_working_on_the_other(pair: Pair) -> None:
    created = await pair.a.http.post("/v1/auth/token/create", json={"policies": ["root"]})
    token = created.json()["auth"]["client_token"]
    headers = {"X-Vault-Token": token}
    assert (await pair.b.http.get("/v1/auth/token/lookup-self", headers=headers)).status_code == 200
    assert (
        await pair.b.http.get("/v1/auth/token/lookup-self", headers=headers)
    ).status_code == 200  # cached
    assert (
        await pair.a.http.post("/v1/auth/token/revoke-self", headers=headers)
    ).status_code == 204

    async def rejected() -> bool:
        return (
            await pair.b.http.get("/v1/auth/token/lookup-self", headers=headers)
        ).status_code == 403

    await eventually(rejected)


async def test_while_listen_is_down_reads_bypass_the_cache(pair: Pair) -> None:
    a, b = pair.a, pair.b
    await a.http.post("/v1/secret/data/svc", json={"data": {"v": "1"}})
    assert await _read(b, "svc") == (200, {"v": "1"})  # cached on B
    with psycopg.connect(pair.database, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            (LISTENER_APPLICATION_NAME,),
        ).fetchall()
    assert len(killed) == 2 and all(row[0] for row in killed)  # both replicas' listeners
    await eventually(lambda: _true(b.core.cache.bypassed))

    # a write B is not told about (its listener may still be reconnecting): B must read it from storage
    await a.http.post("/v1/secret/data/svc", json={"data": {"v": "2"}})
    assert await _read(b, "svc") == (200, {"v": "2"})  # bypassed, or flushed on reconnect: never v1
    await eventually(lambda: _true(not b.core.cache.bypassed))
    assert await _read(b, "svc") == (200, {"v": "2"})
    assert await _read(b, "svc") == (200, {"v": "2"})  # cached again

    # and after the reconnect, notifications work again
    await a.http.post("/v1/secret/data/svc", json={"data": {"v": "3"}})
    await eventually(lambda: _shows(b, "svc", 200, {"v": "3"}))


async def test_nothing_is_cached_until_listen_is_back(pair: Pair) -> None:
    a, b = pair.a, pair.b
    await a.http.post("/v1/secret/data/held", json={"data": {"v": "1"}})
    assert await _read(b, "held") == (200, {"v": "1"})
    dbname = conninfo_to_dict(pair.database)["dbname"]
    with psycopg.connect(make_conninfo(pair.database, dbname="postgres"), autocommit=True) as admin:
        admin.execute(
            f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false'
        )  # the listeners cannot come back
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                (dbname, LISTENER_APPLICATION_NAME),
            )
            await eventually(lambda: _true(b.core.cache.bypassed))
            for value in (
                "2",
                "3",
                "4",
            ):  # pooled connections still work; no notification can arrive
                await a.http.post("/v1/secret/data/held", json={"data": {"v": value}})
                assert await _read(b, "held") == (200, {"v": value})
                assert await _read(b, "held") == (200, {"v": value})
            assert b.core.cache.bypassed
        finally:
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
    await eventually(lambda: _true(not b.core.cache.bypassed))
    assert await _read(b, "held") == (200, {"v": "4"})


# -- state other than caches: policies, mounts, auth methods, the change stream -------------


async def test_policies_mounts_and_auth_methods_follow_announcements_without_requests(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    policy = 'path "secret/data/x" { capabilities = ["read"] }'
    assert (await a.http.put("/v1/sys/policy/reader", json={"policy": policy})).status_code == 204
    assert (
        await a.http.post("/v1/sys/mounts/more", json={"type": "kv", "options": {"version": "2"}})
    ).status_code == 204
    assert (await a.http.post("/v1/sys/auth/people", json={"type": "userpass"})).status_code == 204
    # no request reaches B: only the announcements can change what B holds in memory
    await eventually(lambda: _true(b.core.policies.get("reader") is not None))
    await eventually(lambda: _true(b.core.mounts.get("more/") is not None))
    await eventually(lambda: _true(b.core.auth_table.resolve("people/login/x") is not None))
    assert (await a.http.delete("/v1/sys/policy/reader")).status_code == 204
    assert (await a.http.delete("/v1/sys/mounts/more")).status_code == 204
    await eventually(lambda: _true(b.core.policies.get("reader") is None))
    await eventually(lambda: _true(b.core.mounts.get("more/") is None))


async def test_a_write_on_one_replica_reaches_the_others_change_stream(pair: Pair) -> None:
    a, b = pair.a, pair.b
    on_b = b.core.events.subscribe(mount="secret/", prefix="app/")
    on_a = a.core.events.subscribe(mount="secret/", prefix="app/")
    try:
        await a.http.post("/v1/secret/data/app/one", json={"data": {"v": "1"}})
        await a.http.delete("/v1/secret/data/app/one")
        seen: list[tuple[str, int, str]] = []

        async def heard_both() -> bool:
            batch = await on_b.next(timeout=0.05)
            seen.extend((c.path, c.version, c.kind) for c in batch or [])
            return len(seen) >= 2

        await eventually(heard_both)
        assert seen == [("app/one", 1, "write"), ("app/one", 1, "delete")]
        local = await on_a.next(timeout=_WAIT)  # A published its own changes once, not twice
        assert [(c.path, c.kind) for c in local or []] == [
            ("app/one", "write"),
            ("app/one", "delete"),
        ]
        assert await on_a.next(timeout=0.2) is None
    finally:
        on_a.close()
        on_b.close()


async def test_while_listen_is_down_policies_are_polled_and_subscribers_resync(pair: Pair) -> None:
    a, b = pair.a, pair.b
    subscription = b.core.events.subscribe(mount="secret/", prefix="")
    dbname = conninfo_to_dict(pair.database)["dbname"]
    with psycopg.connect(make_conninfo(pair.database, dbname="postgres"), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                (dbname, LISTENER_APPLICATION_NAME),
            )
            await eventually(lambda: _true(b.core.cache.bypassed))
            policy = 'path "secret/data/y" { capabilities = ["read"] }'
            await a.http.put("/v1/sys/policy/polled", json={"policy": policy})

            async def polled() -> bool:  # B's requests check the policy epoch once a second
                token = await b.core.tokens.create(policies=["polled"])
                await b.http.get("/v1/secret/data/y", headers={"X-Vault-Token": token[0].reveal()})
                return b.core.policies.get("polled") is not None

            await eventually(polled)
        finally:
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
    await eventually(lambda: _true(not b.core.cache.bypassed))
    batch = await subscription.next(timeout=_WAIT)  # announcements may have been missed
    assert batch == [] and subscription.overflowed
    subscription.close()


async def test_revocations_and_policy_changes_reach_the_other_replicas_access_streams(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    created = await a.http.post("/v1/auth/token/create", json={"policies": ["team"]})
    token = created.json()["auth"]["client_token"]
    digest = hash_token(token)
    on_b = b.core.events.subscribe(
        access_only=True, token_hash=digest, policies=frozenset({"team"})
    )
    try:
        policy = 'path "secret/data/team/*" { capabilities = ["read"] }'
        assert (await a.http.put("/v1/sys/policy/team", json={"policy": policy})).status_code == 204
        batch = await on_b.next(timeout=_WAIT)
        assert [(c.kind, c.subjects) for c in batch or []] == [("policy", frozenset({"team"}))]
        assert b.core.policies.get("team") is not None  # reloaded before subscribers were told
        revoked = await a.http.post("/v1/auth/token/revoke", json={"token": token})
        assert revoked.status_code == 204
        batch = await on_b.next(timeout=_WAIT)
        assert [(c.kind, c.subjects) for c in batch or []] == [("revoked", frozenset({digest}))]
    finally:
        on_b.close()


async def test_a_lease_revoked_and_a_kv_rotation_on_one_replica_reach_the_others_stream(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    assert (
        await a.http.post("/v1/sys/mounts/database", json={"type": "database"})
    ).status_code == 204
    await eventually(lambda: _true(b.core.mounts.get("database/") is not None))
    leases_b = b.core.events.subscribe(mount="database/", prefix="creds/")
    kv_b = b.core.events.subscribe(mount="secret/", prefix="rotated/")
    mount = a.core.mounts.get("database/")
    assert mount is not None
    lease = await a.core.leases.issue(  # a lease with no user behind it: nothing to drop
        lease_id=a.core.leases.new_lease_id("database/creds/app"),
        mount=mount,
        path="database/creds/app",
        ttl=3600,
        max_ttl=3600,
        token=None,
        internal={},
    )
    assert await a.core.leases.revoke(lease.lease_id)
    async with asyncio.timeout(_WAIT):
        changes = await leases_b.next(timeout=_WAIT)
    assert changes is not None
    assert [(c.kind, c.path, c.lease_id) for c in changes] == [
        ("revoke", "creds/app", lease.lease_id)
    ]

    rule = await a.http.put(
        "/v1/secret/rotation/rotated/db", json={"fields": ["pw"], "rotation_period": "1h"}
    )
    assert rule.status_code == 204, rule.text
    assert (await a.http.post("/v1/secret/rotate/rotated/db")).status_code == 200
    async with asyncio.timeout(_WAIT):
        written = await kv_b.next(timeout=_WAIT)
    assert written is not None and [(c.kind, c.path) for c in written] == [("write", "rotated/db")]
