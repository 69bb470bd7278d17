"""The token store: Vault-style service tokens, kept in storage only as SHA-256 hashes.

A token is ``hvs.`` followed by 32 random URL-safe characters (192 bits). The
server never stores it: the entry lives at ``auth/token/id/<sha256 hex>``, an
accessor (a second random name that can manage the token without being able
to use it) points at that hash from ``auth/token/accessor/<accessor>``, and
``auth/token/parent/<parent hash>/<child hash>`` links children to their
parent so revoking a token revokes the tokens it created (unless orphans).

Lookups hash the presented token and compare the hashes with
:func:`hmac.compare_digest`. Expired entries are treated as absent. Entries
are cached in memory (keyed by hash, dropped on revoke and renew in this
process). When the server owns its storage alone they stay cached until they
expire; with shared storage (several replicas on one PostgreSQL) an entry is
reused for at most ``cache_ttl`` seconds (default 1), so a revocation made
by another replica takes effect within that time, unless the storage reports
every commit: then :meth:`TokenStore.apply_changes` drops an entry as soon as
another replica's change to it is announced, and disables the cache while
the feed is down.

The identity and policy issues extend this module (entity ids, more auth
methods); keep the storage layout stable.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson

from kustos.errors import InvalidRequestError, StorageError
from kustos.sensitive import Sensitive
from kustos.server.times import Clock
from kustos.store.base import StorageBackend, Transaction
from kustos.store.changes import Changes

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "REVOKED_TOPIC",
    "TOKEN_PREFIX",
    "TokenEntry",
    "TokenStore",
    "hash_token",
]

TOKEN_PREFIX: Final = "hvs."  # noqa: S105 - a public prefix, not a secret
REVOKED_TOPIC: Final = "tokens"
"""Topic a revocation announces itself under with its commit (``{"revoked": [hash]}``): the
other replicas tell their change-stream subscribers (:mod:`kustos.server.replicas`)."""
DEFAULT_TTL: Final = 768 * 3600.0
"""TTL of a non-root token created without ``ttl`` (Vault's default, 32 days)."""
MAX_TTL: Final = 768 * 3600.0
"""Longest TTL a token can have, at creation or renewal (Vault's default max)."""

_ID_PREFIX: Final = "auth/token/id/"
_ACCESSOR_PREFIX: Final = "auth/token/accessor/"
_PARENT_PREFIX: Final = "auth/token/parent/"
_CUSTOM_ID: Final = re.compile(r"[A-Za-z0-9._~+/=-]{1,256}")
_DISPLAY_UNSAFE: Final = re.compile(r"[^a-z0-9-]+")
_CACHE_LIMIT: Final = 10_000


def hash_token(token: str) -> str:
    """Hex SHA-256 of the token: its storage name."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenEntry:
    """What the server knows about one token (never the token itself)."""

    id_hash: str = field(repr=False)
    accessor: str = field(repr=False)
    policies: tuple[str, ...]
    display_name: str
    meta: Mapping[str, str]
    creation_time: float
    ttl: float
    expire_time: float | None
    explicit_max_ttl: float
    renewable: bool
    orphan: bool
    parent_hash: str | None = field(repr=False)
    path: str

    @property
    def is_root(self) -> bool:
        return "root" in self.policies

    def expired(self, now: float) -> bool:
        return self.expire_time is not None and self.expire_time <= now

    def remaining(self, now: float) -> int:
        """Seconds left (0 for a token that never expires)."""
        if self.expire_time is None:
            return 0
        return max(0, round(self.expire_time - now))

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "v": 1,
                "id_hash": self.id_hash,
                "accessor": self.accessor,
                "policies": list(self.policies),
                "display_name": self.display_name,
                "meta": dict(self.meta),
                "creation_time": self.creation_time,
                "ttl": self.ttl,
                "expire_time": self.expire_time,
                "explicit_max_ttl": self.explicit_max_ttl,
                "renewable": self.renewable,
                "orphan": self.orphan,
                "parent_hash": self.parent_hash,
                "path": self.path,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> TokenEntry:
        try:
            doc: Any = orjson.loads(raw)
            return cls(
                id_hash=str(doc["id_hash"]),
                accessor=str(doc["accessor"]),
                policies=tuple(str(p) for p in doc["policies"]),
                display_name=str(doc["display_name"]),
                meta={str(k): str(v) for k, v in doc["meta"].items()},
                creation_time=float(doc["creation_time"]),
                ttl=float(doc["ttl"]),
                expire_time=None if doc["expire_time"] is None else float(doc["expire_time"]),
                explicit_max_ttl=float(doc["explicit_max_ttl"]),
                renewable=bool(doc["renewable"]),
                orphan=bool(doc["orphan"]),
                parent_hash=doc["parent_hash"],
                path=str(doc["path"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise StorageError("a stored token entry is malformed") from None


def _display_name(name: str | None, *, prefix: str) -> str:
    if not name:
        return prefix
    cleaned = _DISPLAY_UNSAFE.sub("-", name.lower()).strip("-")[:64]
    return f"{prefix}-{cleaned}" if cleaned else prefix


class TokenStore:
    """Creates, finds, renews and revokes tokens in storage."""

    def __init__(
        self,
        *,
        storage: StorageBackend,
        clock: Clock,
        cache_ttl: float | None = None,
        new_token: Callable[[], str] | None = None,
    ) -> None:
        """``cache_ttl``: ``None`` caches entries until they expire, ``0`` disables the cache."""
        self._storage = storage
        self._clock = clock
        self._cache_ttl = cache_ttl
        self._cache: dict[str, tuple[TokenEntry, float]] = {}
        self._epoch = 0
        self._new_token = new_token or (lambda: TOKEN_PREFIX + secrets.token_urlsafe(24))
        self._revoke_listeners: list[Callable[[list[str]], Awaitable[None]]] = []

    def add_revoke_listener(self, listener: Callable[[list[str]], Awaitable[None]]) -> None:
        """Call ``listener`` with the hashes of the tokens each revocation removed (the leases go too)."""
        self._revoke_listeners.append(listener)

    async def _revoked(self, digests: list[str]) -> None:
        if digests:
            for listener in self._revoke_listeners:
                await listener(digests)

    # -- creation ------------------------------------------------------------------

    async def create(
        self,
        *,
        policies: Sequence[str],
        ttl: float | None = None,
        explicit_max_ttl: float = 0.0,
        display_name: str | None = None,
        display_prefix: str = "token",
        meta: Mapping[str, str] | None = None,
        parent: TokenEntry | None = None,
        orphan: bool = False,
        renewable: bool = True,
        token_id: str | None = None,
        path: str = "auth/token/create",
        tx: Transaction | None = None,
    ) -> tuple[Sensitive[str], TokenEntry]:
        """Create a token; return it (shown to the caller once) and its entry.

        ``ttl=None`` means the default (no expiry for a root token, 32 days
        otherwise); the TTL is capped at :data:`MAX_TTL` and
        ``explicit_max_ttl``. ``tx`` lets a caller create the token in its
        own transaction (``sys/init`` writes keyring and root token together).
        """
        if token_id is not None and not _CUSTOM_ID.fullmatch(token_id):
            raise InvalidRequestError(
                "token id must be 1-256 characters of letters, digits and ._~+/=-"
            )
        token = token_id if token_id is not None else self._new_token()
        policy_list = sorted(set(policies))
        now = self._clock()
        if ttl is None:
            ttl = 0.0 if "root" in policy_list else DEFAULT_TTL
        if ttl > 0 or "root" not in policy_list:
            ttl = min(ttl or DEFAULT_TTL, MAX_TTL)
        if explicit_max_ttl > 0:
            ttl = min(ttl, explicit_max_ttl) if ttl > 0 else explicit_max_ttl
        entry = TokenEntry(
            id_hash=hash_token(token),
            accessor=secrets.token_urlsafe(18),
            policies=tuple(policy_list),
            display_name=_display_name(display_name, prefix=display_prefix),
            meta=dict(meta or {}),
            creation_time=now,
            ttl=ttl,
            expire_time=(now + ttl) if ttl > 0 else None,
            explicit_max_ttl=explicit_max_ttl,
            renewable=renewable and ttl > 0,
            orphan=orphan or parent is None,
            parent_hash=None if (orphan or parent is None) else parent.id_hash,
            path=path,
        )
        if tx is not None:
            await self._store_new(tx, entry)
        else:
            async with self._storage.transaction() as own:
                await self._store_new(own, entry)
        return Sensitive(token), entry

    async def _store_new(self, tx: Transaction, entry: TokenEntry) -> None:
        key = _ID_PREFIX + entry.id_hash
        if await tx.get(key, for_update=True) is not None:
            raise InvalidRequestError("a token with this id already exists")
        await tx.put(key, entry.to_json())
        await tx.put(_ACCESSOR_PREFIX + entry.accessor, entry.id_hash.encode("ascii"))
        if entry.parent_hash is not None:
            await tx.put(f"{_PARENT_PREFIX}{entry.parent_hash}/{entry.id_hash}", b"")

    # -- lookup --------------------------------------------------------------------

    def cached(self, token: str) -> TokenEntry | None:
        """The live entry for ``token`` if the cache holds it, without a storage read; else ``None``.

        ``None`` does not mean unknown: the caller then asks :meth:`lookup`.
        """
        if not token or len(token) > 512:
            return None
        digest = hash_token(token)
        cached = self._cache.get(digest)
        if cached is None:
            return None
        entry, loaded_at = cached
        ttl = self._cache_ttl
        if ttl is not None or entry.expire_time is not None:
            now = self._clock()
            if (ttl is not None and now - loaded_at >= ttl) or (
                entry.expire_time is not None and entry.expire_time <= now
            ):
                return None
        return entry if hmac.compare_digest(entry.id_hash, digest) else None

    async def lookup(self, token: str) -> TokenEntry | None:
        """The live entry for ``token``, or ``None`` (unknown, malformed or expired)."""
        entry = self.cached(token)
        if entry is not None or not token or len(token) > 512:
            return entry
        digest = hash_token(token)
        ttl = self._cache_ttl
        epoch = self._epoch
        loaded_at = self._clock()
        entry = await self._load(digest)
        if entry is None:
            self._cache.pop(digest, None)
            return None
        if ttl != 0 and epoch == self._epoch:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[digest] = (entry, loaded_at)
        if not hmac.compare_digest(entry.id_hash, digest):
            return None
        if entry.expired(self._clock()):
            self._cache.pop(digest, None)
            return None
        return entry

    async def lookup_accessor(self, accessor: str) -> TokenEntry | None:
        """The live entry an accessor names, or ``None``."""
        if not accessor or "/" in accessor or len(accessor) > 128:
            return None
        raw = await self._storage.get(_ACCESSOR_PREFIX + accessor)
        if raw is None:
            return None
        entry = await self._load(raw.decode("ascii", "replace"))
        if entry is None or entry.expired(self._clock()):
            return None
        return entry

    async def entry_by_hash(self, digest: str) -> TokenEntry | None:
        """The stored entry named by its hash, expired or not (``None`` once revoked)."""
        if not digest or "/" in digest or len(digest) > 128:
            return None
        return await self._load(digest)

    async def _load(self, digest: str) -> TokenEntry | None:
        raw = await self._storage.get(_ID_PREFIX + digest)
        return None if raw is None else TokenEntry.from_json(raw)

    # -- renew and revoke -------------------------------------------------------------

    async def renew(
        self,
        entry: TokenEntry,
        *,
        increment: float | None,
        before_commit: Callable[[TokenEntry], object] | None = None,
    ) -> TokenEntry:
        """Extend a renewable token's TTL by ``increment`` (default: its TTL) from now.

        ``before_commit(renewed)`` runs inside the transaction, before it
        commits (the route declares its answer there; see
        :mod:`kustos.server.committing`).
        """
        if entry.expire_time is None:
            return entry
        if not entry.renewable:
            raise InvalidRequestError("this token is not renewable")
        now = self._clock()
        ttl = min(increment if increment else entry.ttl, MAX_TTL)
        expire = now + ttl
        if entry.explicit_max_ttl > 0:
            expire = min(expire, entry.creation_time + entry.explicit_max_ttl)
        self._invalidate(entry.id_hash)
        async with self._storage.transaction() as tx:
            raw = await tx.get(_ID_PREFIX + entry.id_hash, for_update=True)
            if raw is None:
                raise InvalidRequestError("token was revoked")
            current = TokenEntry.from_json(raw)
            renewed = replace(current, expire_time=expire)
            await tx.put(_ID_PREFIX + entry.id_hash, renewed.to_json())
            if before_commit is not None:
                before_commit(renewed)
        self._invalidate(entry.id_hash)
        return renewed

    async def revoke(self, entry: TokenEntry) -> int:
        """Revoke ``entry`` and, recursively, the non-orphan tokens it created; return how many."""
        self._invalidate(entry.id_hash)
        revoked = 0
        pending = [entry.id_hash]
        removed: list[str] = []
        try:
            while pending:
                digest = pending.pop()
                children = await self._storage.list(f"{_PARENT_PREFIX}{digest}/")
                pending.extend(c for c in children if not c.endswith("/"))
                async with self._storage.transaction() as tx:
                    raw = await tx.get(_ID_PREFIX + digest, for_update=True)
                    if raw is not None:
                        current = TokenEntry.from_json(raw)
                        await tx.delete(_ACCESSOR_PREFIX + current.accessor)
                        if current.parent_hash is not None:
                            await tx.delete(f"{_PARENT_PREFIX}{current.parent_hash}/{digest}")
                        await tx.delete(_ID_PREFIX + digest)
                        tx.announce(REVOKED_TOPIC, {"revoked": [digest]})
                        revoked += 1
                    await tx.delete_prefix(f"{_PARENT_PREFIX}{digest}/")
                self._invalidate(digest)
                removed.append(digest)
        finally:
            self._epoch += 1
        await self._revoked(removed)
        return revoked

    async def revoke_orphan(self, entry: TokenEntry) -> None:
        """Revoke ``entry`` alone; the tokens it created become orphans (they keep working)."""
        self._invalidate(entry.id_hash)
        children = [
            c
            for c in await self._storage.list(f"{_PARENT_PREFIX}{entry.id_hash}/")
            if not c.endswith("/")
        ]
        try:
            async with self._storage.transaction() as tx:
                for child in children:
                    raw = await tx.get(_ID_PREFIX + child, for_update=True)
                    if raw is not None:
                        current = TokenEntry.from_json(raw)
                        await tx.put(
                            _ID_PREFIX + child,
                            replace(current, orphan=True, parent_hash=None).to_json(),
                        )
                await tx.delete_prefix(f"{_PARENT_PREFIX}{entry.id_hash}/")
                raw = await tx.get(_ID_PREFIX + entry.id_hash, for_update=True)
                if raw is not None:
                    current = TokenEntry.from_json(raw)
                    await tx.delete(_ACCESSOR_PREFIX + current.accessor)
                    if current.parent_hash is not None:
                        await tx.delete(f"{_PARENT_PREFIX}{current.parent_hash}/{entry.id_hash}")
                    await tx.delete(_ID_PREFIX + entry.id_hash)
                    tx.announce(REVOKED_TOPIC, {"revoked": [entry.id_hash]})
        finally:
            for child in children:
                self._cache.pop(child, None)
            self._epoch += 1
        await self._revoked([entry.id_hash])

    def apply_changes(self, changes: Changes) -> None:
        """Follow a storage change feed: drop entries others changed; cache only while it is watching.

        Once fed, the cache keeps entries until they change or expire while
        the feed is up (``watching``), and is off while it is down.
        """
        if changes.everything or not changes.watching:
            self._epoch += 1
            self._cache.clear()
            self._cache_ttl = None if changes.watching else 0
            return
        for prefix in changes.prefixes:
            if _ID_PREFIX.startswith(prefix):
                self._epoch += 1
                self._cache.clear()
                return
            if prefix.startswith(_ID_PREFIX):
                start = prefix[len(_ID_PREFIX) :]
                for digest in [d for d in self._cache if d.startswith(start)]:
                    self._invalidate(digest)
        for key in changes.keys:
            if key.startswith(_ID_PREFIX):
                self._invalidate(key[len(_ID_PREFIX) :])

    def _invalidate(self, digest: str) -> None:
        self._epoch += 1
        self._cache.pop(digest, None)
