"""The server's state in one object: storage, barrier, tokens, mounts, engines, metrics.

:meth:`Core.open` connects storage, builds the key provider, reads the
keyring (auto-unsealing when the provider allows) and the mount table.
:meth:`Core.initialize` is ``sys/init``: keyring, Shamir shares and the root
token, in one transaction. :meth:`Core.dev_bootstrap` is what
``kustos server --dev`` does on start: initialize on first start, mount
``secret/`` (kv v2), and make sure a requested dev root token exists.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final

import orjson

from kustos.config import ServerConfig
from kustos.errors import InvalidRequestError
from kustos.keys import open_provider
from kustos.keys.base import KeyProvider
from kustos.sensitive import Sensitive
from kustos.server.access import Authorizer, authorize
from kustos.server.auditing import Auditing
from kustos.server.auth.mounts import AuthTable
from kustos.server.auth.records import auth_method_families
from kustos.server.barrier import Barrier, CiphertextFamily
from kustos.server.bound import BoundService
from kustos.server.caching import RecordCache
from kustos.server.engines import Engine
from kustos.server.engines.database import DatabaseEngine
from kustos.server.engines.kv import KvEngine
from kustos.server.engines.transit import TransitEngine
from kustos.server.events import ChangeHub
from kustos.server.leases import ANNOUNCEMENT_TOPIC as LEASE_TOPIC
from kustos.server.leases import LeaseManager
from kustos.server.mounts import MountTable
from kustos.server.observability import Metrics
from kustos.server.passwords import PasswordPolicies
from kustos.server.policies import PolicyStore
from kustos.server.replicas import Replication
from kustos.server.sealing import SealingService
from kustos.server.timers import Timers
from kustos.server.times import Clock, rfc3339
from kustos.server.tokens import TokenStore, hash_token
from kustos.store import open_backend
from kustos.store.base import StorageBackend, Transaction
from kustos.store.changes import ChangeWatching

__all__ = ["DATA_MIGRATIONS_KEY", "DEFAULT_CACHE_ENTRIES", "Core", "DevBootstrap", "InitResult"]

DATA_MIGRATIONS_KEY: Final = "core/migrations/data"
"""Written once the data migrations of :meth:`Core.finish_unseal` ran on this storage."""
DEFAULT_CACHE_ENTRIES: Final = 50_000
"""Records kept in the read cache: SQLite (the server owns it), PostgreSQL with change notifications."""

_log = logging.getLogger("kustos.server")


@dataclass(frozen=True)
class InitResult:
    """What ``sys/init`` returns once: the unseal shares and the root token."""

    shares: list[Sensitive[str]]
    root_token: Sensitive[str]


@dataclass(frozen=True)
class DevBootstrap:
    """What ``--dev`` did on start. ``root_token`` is set only when it was just created."""

    initialized_now: bool
    root_token: Sensitive[str] | None


class Core:
    """Everything a request handler needs, opened once per server process."""

    def __init__(
        self,
        *,
        config: ServerConfig,
        storage: StorageBackend,
        provider: KeyProvider,
        clock: Clock,
        authorizer: Authorizer,
        cache_entries: int,
    ) -> None:
        self.config = config
        self.migrating = False
        """True while :meth:`finish_unseal` runs (data paths answer 503)."""
        self._data_migrated = False
        self.storage = storage
        self.clock = clock
        self.authorizer = authorizer
        self.metrics = Metrics()
        self.metrics.watch_commits(lambda: storage.commit_stats)
        self.barrier = Barrier(storage=storage, provider=provider, clock=clock)
        shared = storage.name != "sqlite"
        watched = shared and isinstance(storage, ChangeWatching)
        owned = cache_entries > 0 and not shared
        # shared storage with change notifications: caches start bypassed until the feed is up (watch_storage)
        self.cache = RecordCache(
            storage=storage,
            max_entries=cache_entries,
            bypass=watched,
            on_forget=self.barrier.forget_plaintexts,
        )
        # storage owned alone (a read cache is on): cache token entries until they expire; shared with
        # notifications: until another replica changes them; shared without: re-read after a second
        self.tokens = TokenStore(
            storage=storage, clock=clock, cache_ttl=None if owned else 0 if watched else 1.0
        )
        self.mounts = MountTable(storage=storage, clock=clock)
        self.auth_table = AuthTable(storage=storage, clock=clock)
        """Enabled auth methods (``sys/auth``), shared by the ``auth/<path>`` routes."""
        self.policies = PolicyStore(
            storage=storage, clock=clock, refresh_interval=None if owned or watched else 1.0
        )
        """ACL policies; with the default authorizer, every permission check is decided by them."""
        if authorizer is authorize:
            self.authorizer = authorizer = self.policies.authorize
        self.events = ChangeHub(clock=clock)
        """Committed KV changes and access changes, fanned out to ``sys/events/subscribe`` streams."""
        self.tokens.add_revoke_listener(self._tell_revoked)
        self.policies.on_change = self.events.policy_changed
        self.timers = Timers(storage=storage, clock=clock, ready=lambda: self.barrier.serving)
        """Durable timers (lease ends, scheduled rotations), run by one replica at a time."""
        self.passwords = PasswordPolicies(storage=storage)
        """Vault password policies (``sys/policies/password``)."""
        self.kv = KvEngine(
            storage=storage,
            barrier=self.barrier,
            cache=self.cache,
            clock=clock,
            authorizer=authorizer,
            max_value_bytes=config.max_value_bytes,
            events=self.events,
            passwords=self.passwords,
            timers=self.timers,
            mounts=self.mounts,
        )
        self.audit = Auditing(storage=storage, barrier=self.barrier, clock=clock)
        """Audit devices (``sys/audit``); the dispatcher records every API call through it."""
        self.sealing = SealingService(storage=storage, barrier=self.barrier, clock=clock)
        """GitOps sealing keys, barrier-encrypted (``sys/sealing/*``, ``/v1/cert.pem``)."""
        self.bound = BoundService(storage=storage, barrier=self.barrier)
        """Root keys of values only one ServiceAccount can open (``sys/bound/*``)."""
        self.engines: dict[str, Engine] = {"kv": self.kv}
        """Secrets engines by mount type; the dispatcher sends a mount's requests to its engine."""
        self.engines["transit"] = TransitEngine(
            storage=storage,
            barrier=self.barrier,
            cache=self.cache,
            clock=clock,
            authorizer=authorizer,
        )
        self.leases = LeaseManager(
            storage=storage,
            barrier=self.barrier,
            clock=clock,
            timers=self.timers,
            mounts=self.mounts,
            events=self.events,
            tokens=self.tokens,
            holders=self.engines,
        )
        """Leases of dynamic secrets (``sys/leases``); revoked with their token, or at their end."""
        self.engines["database"] = DatabaseEngine(
            storage=storage,
            barrier=self.barrier,
            clock=clock,
            authorizer=authorizer,
            leases=self.leases,
            passwords=self.passwords,
            timers=self.timers,
            mounts=self.mounts,
        )
        self.replication = Replication(
            storage=storage,
            cache=self.cache,
            tokens=self.tokens,
            policies=self.policies,
            mounts=self.mounts,
            auth_table=self.auth_table,
            audit=self.audit,
            events=self.events,
            kv=self.kv,
        )
        """Follows the other replicas' commits on shared storage (:mod:`kustos.server.replicas`)."""
        self.replication.watch(self.timers.apply_changes)
        self.replication.on(LEASE_TOPIC, self.leases.announced)

    @classmethod
    async def open(
        cls,
        config: ServerConfig,
        *,
        storage: StorageBackend | None = None,
        provider: KeyProvider | None = None,
        clock: Clock = time.time,
        authorizer: Authorizer = authorize,
        cache_entries: int | None = None,
    ) -> Core:
        """Connect storage, build the key provider, load keyring and mounts.

        ``cache_entries`` defaults to :data:`DEFAULT_CACHE_ENTRIES` for SQLite
        and for a shared backend with change notifications (PostgreSQL), else 0.
        """
        backend = storage if storage is not None else open_backend(config.storage)
        await backend.open()
        try:
            key_provider = provider if provider is not None else open_provider(config.keys)
            if cache_entries is None:
                cache_entries = (
                    DEFAULT_CACHE_ENTRIES
                    if backend.name == "sqlite" or isinstance(backend, ChangeWatching)
                    else 0
                )
            core = cls(
                config=config,
                storage=backend,
                provider=key_provider,
                clock=clock,
                authorizer=authorizer,
                cache_entries=cache_entries,
            )
            await core.watch_storage()
            await core.barrier.load()
            await core.mounts.load()
            await core.auth_table.load()
            await core.policies.load()
            await core.audit.load()
            await core.finish_unseal()
        except BaseException:
            await backend.close()
            raise
        core.refresh_seal_metrics()
        return core

    async def _tell_revoked(self, digests: list[str]) -> None:
        """Revoked tokens: their change streams get a ``revoked`` event (the agent wipes its files)."""
        self.events.tokens_revoked(frozenset(digests))

    async def watch_storage(self) -> None:
        """On shared storage with change notifications, follow the other replicas' commits."""
        await self.replication.start()

    async def close(self) -> None:
        database = self.engines.get("database")
        if isinstance(database, DatabaseEngine):
            await database.close()
        await self.replication.close()
        self.audit.close()
        self.barrier.close()
        await self.storage.close()

    @property
    def serving(self) -> bool:
        """Initialized, unsealed and done with :meth:`finish_unseal`: data paths may be served."""
        return self.barrier.serving and not self.migrating

    async def finish_unseal(self) -> None:
        """Data migrations that need the keyring, once, right after an unseal (or an init).

        Meanwhile :attr:`migrating` is true and data paths answer 503. Today:
        KV metadata records of older releases get their attestation
        (:meth:`KvEngine.migrate_metadata`); a marker at
        :data:`DATA_MIGRATIONS_KEY` records that it ran, so later starts skip the scan.
        """
        if not self.barrier.serving or self._data_migrated:
            return
        self.migrating = True
        try:
            if await self.storage.get(DATA_MIGRATIONS_KEY) is None:
                await self.mounts.load()
                rewritten = 0
                for mount in self.mounts.entries():
                    if mount.type == "kv":
                        rewritten += await self.kv.migrate_metadata(mount)
                async with self.storage.transaction() as tx:
                    await tx.put(
                        DATA_MIGRATIONS_KEY,
                        orjson.dumps(
                            {"kv-meta-attested": rfc3339(self.clock()), "records": rewritten}
                        ),
                    )
                if rewritten:
                    _log.info(f"attested {rewritten} KV metadata records of an older release")
            self._data_migrated = True
        finally:
            self.migrating = False

    def refresh_seal_metrics(self) -> None:
        self.metrics.set_seal_state(
            initialized=self.barrier.initialized, sealed=self.barrier.sealed
        )

    def ciphertext_families(self) -> list[CiphertextFamily]:
        """Every place a ciphertext is stored (for rewrap and key-version checks)."""
        return (
            [
                family
                for mount in self.mounts.entries()
                if (engine := self.engines.get(mount.type)) is not None
                for family in engine.ciphertext_families(mount)
            ]
            + self.sealing.ciphertext_families()
            + self.bound.ciphertext_families()
            + auth_method_families()
            + LeaseManager.ciphertext_families()
        )

    async def initialize(
        self,
        *,
        secret_shares: int,
        secret_threshold: int,
        root_token_id: str | None = None,
    ) -> InitResult:
        """``sys/init``: create the keyring (and shares) and the root token, once.

        Then the KV version 2 mounts of ``config.initial_kv_mounts`` (a non-dev
        server has none otherwise), unless a mount is already there.
        """
        created: list[Sensitive[str]] = []

        async def write_root(tx: Transaction) -> None:
            token, _ = await self.tokens.create(
                policies=["root"],
                display_name=None,
                display_prefix="root",
                token_id=root_token_id,
                path="auth/token/root",
                tx=tx,
            )
            created.append(token)

        shares = await self.barrier.initialize(
            secret_shares=secret_shares, secret_threshold=secret_threshold, extra=write_root
        )
        self.refresh_seal_metrics()
        for path in self.config.initial_kv_mounts:
            # The mount table is not behind the barrier: this works sealed (shamir) too.
            if self.mounts.get(path) is None:
                await self.mounts.enable(
                    path,
                    type="kv",
                    description="key/value secret storage",
                    options={"version": "2"},
                )
        _log.info(f"server initialized (key provider: {self.barrier.seal_type})")
        await self.finish_unseal()
        return InitResult(shares=[Sensitive(s) for s in shares], root_token=created[0])

    async def dev_bootstrap(self, *, root_token_id: str | None = None) -> DevBootstrap:
        """Initialize on first start (with a ``secret/`` kv-v2 mount); ensure the dev root token."""
        if not self.barrier.initialized:
            result = await self.initialize(
                secret_shares=1, secret_threshold=1, root_token_id=root_token_id
            )
            if self.barrier.sealed:
                raise InvalidRequestError(
                    "dev mode needs an auto-unseal key provider (local or pkcs11)"
                )
            if self.mounts.get("secret/") is None:
                await self.mounts.enable(
                    "secret/",
                    type="kv",
                    description="key/value secret storage",
                    options={"version": "2"},
                )
            return DevBootstrap(initialized_now=True, root_token=result.root_token)
        if root_token_id is not None and await self.tokens.lookup(root_token_id) is None:
            if await self.storage.get(f"auth/token/id/{hash_token(root_token_id)}") is None:
                token, _ = await self.tokens.create(
                    policies=["root"],
                    display_prefix="root",
                    token_id=root_token_id,
                    path="auth/token/root",
                )
                return DevBootstrap(initialized_now=False, root_token=token)
        return DevBootstrap(initialized_now=False, root_token=None)
