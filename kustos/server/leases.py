"""Leases: every dynamic secret has an end, and whatever issued it takes it back at that end.

A secrets engine that hands out something that must be undone later (the
database engine's users) records a :class:`Lease` through
:meth:`LeaseManager.issue`. The lease id is Vault's shape: the path the
secret was read from plus a random suffix (``database/creds/app/Xk3...``),
so ``sys/leases/revoke-prefix/database/creds/app`` revokes every user of
that role. Callers see ``lease_id``, ``lease_duration`` and ``renewable`` in
the response envelope.

Storage (all under ``sys/leases/``, beside the mount data it refers to):

- ``sys/leases/id/<lease id>``: the lease, barrier-encrypted with context
  ``("kustos/lease", lease id)``; it holds the engine's data needed to revoke
  (a database username, never a password) and the hash of the token that
  asked for it;
- ``sys/leases/token/<token hash>/<lease id>``: empty; which leases go when
  that token is revoked (its children's too, as the token store walks them);
- a durable timer (:mod:`kustos.server.timers`) at the lease's end, and one
  at the end of each token that holds leases (when it expires, its leases go).

Revocation asks the issuing engine (:class:`LeaseHolder`) to undo the secret,
then deletes the lease, its timer and its token link in one transaction,
then publishes a ``revoke`` change (:mod:`kustos.server.events`) so consumers
(the operator, the agent) drop the credential; the revocation is announced
with its commit (topic ``leases``), so every other replica's change stream
publishes it too (:mod:`kustos.server.replicas`). If the engine fails (the
database is down), the lease stays and its timer retries; ``revoke-force``
deletes the lease anyway. A lease whose mount was disabled is simply removed.
"""

from __future__ import annotations

import logging
import re
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

import orjson

from kustos.crypto.envelope import context
from kustos.errors import InvalidRequestError, KustosError, StorageError
from kustos.server.barrier import Barrier, CiphertextFamily
from kustos.server.events import ChangeHub
from kustos.server.mounts import MountEntry, MountTable
from kustos.server.timers import Timers
from kustos.server.times import Clock
from kustos.server.tokens import TokenEntry, TokenStore
from kustos.store.base import StorageBackend, Transaction

__all__ = [
    "ANNOUNCEMENT_TOPIC",
    "LEASE_PREFIX",
    "MAX_LEASE_TTL",
    "Lease",
    "LeaseHolder",
    "LeaseManager",
    "TidyReport",
    "validate_lease_id",
]

LEASE_PREFIX: Final = "sys/leases/id/"
ANNOUNCEMENT_TOPIC: Final = "leases"
"""Topic a revocation is announced under with its commit (mount, path, lease id; never a secret)."""
_TOKEN_PREFIX: Final = "sys/leases/token/"  # noqa: S105 - a storage prefix
_CONTEXT_LABEL: Final = "kustos/lease"
MAX_LEASE_TTL: Final = 768 * 3600.0
"""The system-wide default and maximum lease TTL (Vault's 32 days)."""
_SUFFIX_CHARS: Final = string.ascii_letters + string.digits
_LEASE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,511}")

_log = logging.getLogger("kustos.server.leases")


def validate_lease_id(value: object, *, field: str = "lease_id") -> str:
    """A lease id or prefix as callers send it; raise naming ``field`` when malformed."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"missing required parameter '{field}'")
    text = value.strip()
    if not _LEASE_ID.fullmatch(text) or "//" in text or "/../" in f"/{text}/":
        raise InvalidRequestError(
            f"{field} must be 1-512 characters of letters, digits, '.', '_', '-' and '/'"
        )
    return text


@dataclass(frozen=True)
class Lease:
    """One lease. ``internal`` is the engine's data for revoking (never shown to callers)."""

    lease_id: str
    mount_uuid: str
    path: str
    """The API path the secret was issued at, e.g. ``database/creds/app``."""
    issue_time: float
    expire_time: float
    ttl: float
    """The TTL granted at issue: the default renewal increment."""
    max_expire: float
    renewable: bool
    token_hash: str | None = field(repr=False)
    internal: Mapping[str, Any] = field(default_factory=dict, repr=False)
    last_renewal: float | None = None

    def remaining(self, now: float) -> int:
        return max(0, round(self.expire_time - now))

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "v": 1,
                "lease_id": self.lease_id,
                "mount_uuid": self.mount_uuid,
                "path": self.path,
                "issue_time": self.issue_time,
                "expire_time": self.expire_time,
                "ttl": self.ttl,
                "max_expire": self.max_expire,
                "renewable": self.renewable,
                "token_hash": self.token_hash,
                "internal": dict(self.internal),
                "last_renewal": self.last_renewal,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Lease:
        try:
            doc: Any = orjson.loads(raw)
            return cls(
                lease_id=str(doc["lease_id"]),
                mount_uuid=str(doc["mount_uuid"]),
                path=str(doc["path"]),
                issue_time=float(doc["issue_time"]),
                expire_time=float(doc["expire_time"]),
                ttl=float(doc["ttl"]),
                max_expire=float(doc["max_expire"]),
                renewable=bool(doc["renewable"]),
                token_hash=None if doc["token_hash"] is None else str(doc["token_hash"]),
                internal=dict(doc["internal"]),
                last_renewal=None if doc["last_renewal"] is None else float(doc["last_renewal"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise StorageError("a stored lease is malformed") from None


class LeaseHolder(Protocol):
    """An engine that issues leases: it undoes (revokes) and extends (renews) what it issued."""

    async def revoke_lease(self, mount: MountEntry, lease: Lease) -> None:
        """Undo the secret (drop the database user); raise if that failed."""
        ...

    async def renew_lease(self, mount: MountEntry, lease: Lease, expire_time: float) -> None:
        """Extend the secret to ``expire_time`` where it lives (``VALID UNTIL``); raise if it failed."""
        ...


@dataclass(frozen=True)
class TidyReport:
    """What :meth:`LeaseManager.tidy` cleaned up."""

    token_links_removed: int
    orphaned_leases_revoked: int


class LeaseManager:
    """Issues, looks up, renews and revokes leases; expires them through durable timers."""

    def __init__(
        self,
        *,
        storage: StorageBackend,
        barrier: Barrier,
        clock: Clock,
        timers: Timers,
        mounts: MountTable,
        events: ChangeHub,
        tokens: TokenStore,
        holders: Mapping[str, object],
    ) -> None:
        """``holders``: engines by mount type; those that are :class:`LeaseHolder` issue leases."""
        self._storage = storage
        self._barrier = barrier
        self._clock = clock
        self._timers = timers
        self._mounts = mounts
        self._events = events
        self._tokens = tokens
        self._holders = holders
        timers.register("lease", self._expire)
        timers.register("token", self._token_expired)
        tokens.add_revoke_listener(self.revoke_for_tokens)

    # -- storage ----------------------------------------------------------------------

    @staticmethod
    def _context(lease_id: str) -> bytes:
        return context(_CONTEXT_LABEL, lease_id)

    @classmethod
    def ciphertext_families(cls) -> list[CiphertextFamily]:
        """Lease records, each one barrier ciphertext (for rewrap and key-version checks)."""
        return [
            CiphertextFamily.whole_records(
                LEASE_PREFIX, lambda key: cls._context(key[len(LEASE_PREFIX) :])
            )
        ]

    async def _load(self, lease_id: str, tx: Transaction | None = None) -> Lease | None:
        key = LEASE_PREFIX + lease_id
        raw = await (tx.get(key, for_update=True) if tx is not None else self._storage.get(key))
        if raw is None:
            return None
        return Lease.from_json(await self._barrier.decrypt(raw, context=self._context(lease_id)))

    async def _store(self, tx: Transaction, lease: Lease) -> None:
        blob = self._barrier.encrypt(lease.to_json(), context=self._context(lease.lease_id))
        await tx.put(LEASE_PREFIX + lease.lease_id, blob)

    # -- issue ------------------------------------------------------------------------

    def new_lease_id(self, path: str) -> str:
        """``<path>/<24 random letters and digits>``."""
        suffix = "".join(secrets.choice(_SUFFIX_CHARS) for _ in range(24))
        return f"{path.strip('/')}/{suffix}"

    def ttls(self, mount: MountEntry, *, ttl: float, max_ttl: float) -> tuple[float, float]:
        """The effective TTL and max TTL: the role's, else the mount's, else 32 days; TTL <= max."""
        config = mount.config
        mount_max = float(config.get("max_lease_ttl") or 0) or MAX_LEASE_TTL
        mount_default = float(config.get("default_lease_ttl") or 0) or MAX_LEASE_TTL
        effective_max = min(max_ttl, mount_max) if max_ttl > 0 else mount_max
        effective = ttl if ttl > 0 else mount_default
        return min(effective, effective_max), effective_max

    async def issue(
        self,
        *,
        lease_id: str,
        mount: MountEntry,
        path: str,
        ttl: float,
        max_ttl: float,
        token: TokenEntry | None,
        internal: Mapping[str, Any],
        renewable: bool = True,
        issue_time: float | None = None,
    ) -> Lease:
        """Record a lease (and its timer, and its token link) in one transaction."""
        now = self._clock() if issue_time is None else issue_time
        lease = Lease(
            lease_id=lease_id,
            mount_uuid=mount.uuid,
            path=path,
            issue_time=now,
            expire_time=now + ttl,
            ttl=ttl,
            max_expire=now + max_ttl,
            renewable=renewable,
            token_hash=token.id_hash if token is not None and not token.is_root else None,
            internal=dict(internal),
        )
        async with self._storage.transaction() as tx:
            await self._store(tx, lease)
            await self._timers.schedule(tx, lease.expire_time, "lease", lease_id)
            if lease.token_hash is not None and token is not None:
                await tx.put(f"{_TOKEN_PREFIX}{lease.token_hash}/{lease_id}", b"")
                if token.expire_time is not None:
                    await self._timers.schedule(tx, token.expire_time, "token", token.id_hash)
        return lease

    # -- lookup, list -------------------------------------------------------------------

    async def lookup(self, lease_id: str) -> Lease | None:
        return await self._load(validate_lease_id(lease_id))

    async def list_ids(self, prefix: str) -> list[str]:
        """The next segments under a lease id prefix (folders end in ``/``), like Vault's LIST."""
        stripped = prefix.strip("/")
        if stripped:
            validate_lease_id(stripped, field="prefix")
        return await self._storage.list(LEASE_PREFIX + (f"{stripped}/" if stripped else ""))

    # -- renew --------------------------------------------------------------------------

    async def renew(
        self,
        lease_id: str,
        *,
        increment: float | None,
        before_commit: Callable[[Lease], object] | None = None,
    ) -> Lease:
        """Extend a lease by ``increment`` (default: its TTL) from now, up to its max TTL.

        ``before_commit(renewed)`` runs in the transaction that stores it, before it commits.
        """
        lease = await self._load(validate_lease_id(lease_id))
        if lease is None:
            raise InvalidRequestError("lease not found")
        if not lease.renewable:
            raise InvalidRequestError("lease is not renewable")
        now = self._clock()
        if lease.expire_time <= now:
            raise InvalidRequestError("lease expired")
        expire = min(now + (increment if increment else lease.ttl), lease.max_expire)
        holder, mount = self._holder(lease)
        if holder is not None and mount is not None:
            await holder.renew_lease(mount, lease, expire)
        async with self._storage.transaction() as tx:
            current = await self._load(lease_id, tx)
            if current is None:
                raise InvalidRequestError("lease not found")
            renewed = replace(current, expire_time=expire, last_renewal=now)
            await self._store(tx, renewed)
            await self._timers.cancel(tx, current.expire_time, "lease", lease_id)
            await self._timers.schedule(tx, expire, "lease", lease_id)
            if before_commit is not None:
                before_commit(renewed)
        return renewed

    # -- revoke -------------------------------------------------------------------------

    def _holder(self, lease: Lease) -> tuple[LeaseHolder | None, MountEntry | None]:
        mount = next((m for m in self._mounts.entries() if m.uuid == lease.mount_uuid), None)
        if mount is None:
            return None, None
        holder = self._holders.get(mount.type)
        if holder is None or not hasattr(holder, "revoke_lease"):
            return None, mount
        return holder, mount  # type: ignore[return-value]

    async def revoke(self, lease_id: str, *, force: bool = False) -> bool:
        """Undo the secret and delete the lease; ``False`` if there was no such lease.

        Raises what the engine raised, keeping the lease, unless ``force``.
        """
        lease = await self._load(validate_lease_id(lease_id))
        if lease is None:
            return False
        holder, mount = self._holder(lease)
        if holder is not None and mount is not None:
            try:
                await holder.revoke_lease(mount, lease)
            except Exception as exc:
                if not force:
                    raise
                _log.warning(
                    "lease revocation failed; lease removed anyway (revoke-force)",
                    extra={
                        "error": str(exc) if isinstance(exc, KustosError) else type(exc).__name__
                    },
                )
        async with self._storage.transaction() as tx:
            current = await self._load(lease_id, tx)
            if current is None:
                return False
            await tx.delete(LEASE_PREFIX + lease_id)
            await self._timers.cancel(tx, current.expire_time, "lease", lease_id)
            if current.token_hash is not None:
                await tx.delete(f"{_TOKEN_PREFIX}{current.token_hash}/{lease_id}")
            if mount is not None:  # the other replicas' change streams carry it too
                tx.announce(
                    ANNOUNCEMENT_TOPIC,
                    {"mount": mount.path, "path": self._rest(lease, mount), "lease_id": lease_id},
                )
        if mount is not None:
            self._events.publish(
                mount.path, self._rest(lease, mount), 0, "revoke", lease_id=lease_id
            )
        return True

    @staticmethod
    def _rest(lease: Lease, mount: MountEntry) -> str:
        """The lease's path inside its mount (``creds/app``)."""
        return lease.path[len(mount.path) :] if lease.path.startswith(mount.path) else lease.path

    def announced(self, document: Mapping[str, Any]) -> None:
        """Another replica revoked a lease: tell this replica's change-stream subscribers."""
        mount, path, lease_id = (document.get(k) for k in ("mount", "path", "lease_id"))
        if isinstance(mount, str) and isinstance(path, str) and isinstance(lease_id, str):
            self._events.publish(mount, path, 0, "revoke", lease_id=lease_id)

    async def lease_ids(self, prefix: str) -> list[str]:
        """Every lease id starting with ``prefix`` (a whole path segment prefix)."""
        stripped = prefix.strip("/")
        if stripped:
            validate_lease_id(stripped, field="prefix")
        start = LEASE_PREFIX + (f"{stripped}/" if stripped else "")
        ids = [key[len(LEASE_PREFIX) :] async for key, _ in self._storage.scan(start)]
        exact = await self._storage.get(LEASE_PREFIX + stripped) if stripped else None
        return ([stripped] if exact is not None else []) + ids

    async def revoke_prefix(self, prefix: str, *, force: bool = False) -> int:
        """Revoke every lease under ``prefix``; return how many. Stops at the first failure unless ``force``."""
        revoked = 0
        for lease_id in await self.lease_ids(prefix):
            if await self.revoke(lease_id, force=force):
                revoked += 1
        return revoked

    async def revoke_for_tokens(self, token_hashes: list[str]) -> None:
        """Revoke the leases of tokens that were just revoked; a failure leaves the lease to its timer."""
        for digest in token_hashes:
            prefix = f"{_TOKEN_PREFIX}{digest}/"
            lease_ids = [key[len(prefix) :] async for key, _ in self._storage.scan(prefix)]
            for lease_id in lease_ids:
                try:
                    await self.revoke(lease_id)
                except Exception as exc:
                    _log.warning(
                        "revoking a revoked token's lease failed; its timer retries",
                        extra={
                            "error": str(exc)
                            if isinstance(exc, KustosError)
                            else type(exc).__name__
                        },
                    )
                    await self._retry_soon(lease_id)
            async with self._storage.transaction() as tx:
                await tx.delete_prefix(prefix)

    async def _retry_soon(self, lease_id: str) -> None:
        async with self._storage.transaction() as tx:
            lease = await self._load(lease_id, tx)
            if lease is not None:
                await self._timers.schedule(tx, self._clock() + 2.0, "lease", lease_id)

    # -- timers --------------------------------------------------------------------------

    async def _expire(self, lease_id: str) -> float | None:
        lease = await self._load(lease_id)
        if lease is None:
            return None
        if lease.expire_time > self._clock() + 0.001:
            return lease.expire_time  # renewed meanwhile
        await self.revoke(lease_id)
        return None

    async def _token_expired(self, token_hash: str) -> float | None:
        entry = await self._tokens.entry_by_hash(token_hash)
        if entry is not None and not entry.expired(self._clock()):
            return entry.expire_time  # renewed (None: no longer expires)
        if entry is not None:
            await self._tokens.revoke(entry)  # revokes its leases and its children's
        else:
            await self.revoke_for_tokens([token_hash])
        return None

    # -- tidy ----------------------------------------------------------------------------

    async def tidy(self) -> TidyReport:
        """Drop token links to leases that are gone; revoke leases whose token is gone."""
        links = 0
        orphaned = 0
        async for key, _ in self._storage.scan(_TOKEN_PREFIX):
            digest, _, lease_id = key[len(_TOKEN_PREFIX) :].partition("/")
            if await self._storage.get(LEASE_PREFIX + lease_id) is None:
                async with self._storage.transaction() as tx:
                    await tx.delete(key)
                links += 1
            elif await self._tokens.entry_by_hash(digest) is None:
                try:
                    if await self.revoke(lease_id):
                        orphaned += 1
                except Exception as exc:
                    _log.warning(
                        "tidy: revoking an orphaned lease failed",
                        extra={
                            "error": str(exc)
                            if isinstance(exc, KustosError)
                            else type(exc).__name__
                        },
                    )
        return TidyReport(token_links_removed=links, orphaned_leases_revoked=orphaned)
