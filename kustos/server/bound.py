"""The server side of bound values: the root keys behind the barrier, and who may open what.

Bound values (:mod:`kustos.crypto.bound`) are encrypted for one Kubernetes
ServiceAccount under a key derived from a server-held *root key*. The root
keys are one record, ``core/bound/keyring``, a barrier ciphertext with the
context ``kustos/bound-keyring`` (listed as a :class:`CiphertextFamily`, so
``sys/rewrap`` and ``sys/keyring/disable`` see it). The first root key is
made at first use; :meth:`BoundService.rotate` adds a version that seals
from then on, older versions still open.

Settings (``core/bound/config``, not secret): ``kubernetes_mount``, the
kubernetes auth mount whose logins may open values (default
``kubernetes``), and ``allow_unauthenticated_encrypt`` (Kamus lets anyone
encrypt; off by default here).

:func:`opener_of` decides whom a token speaks for: only a token issued by a
login at that mount carries a ServiceAccount identity (the namespace, name
and UID the cluster's TokenReview vouched for). Tokens made any other way
(``auth/token/create``, even with the same metadata; root; userpass) open
nothing.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from kustos.crypto import bound
from kustos.crypto.bound import BoundIdentity, BoundValue
from kustos.errors import DecryptionError, InvalidRequestError, StorageError
from kustos.server.barrier import Barrier, CiphertextFamily
from kustos.server.tokens import TokenEntry
from kustos.store.base import StorageBackend

__all__ = [
    "CONFIG_KEY",
    "KEYRING_CONTEXT",
    "KEYRING_KEY",
    "BoundConfig",
    "BoundService",
    "opener_of",
]

KEYRING_KEY: Final = "core/bound/keyring"
CONFIG_KEY: Final = "core/bound/config"
KEYRING_CONTEXT: Final = b"kustos/bound-keyring"


@dataclass(frozen=True)
class BoundConfig:
    """``sys/bound/config``."""

    kubernetes_mount: str = "kubernetes"
    allow_unauthenticated_encrypt: bool = False

    def to_doc(self) -> dict[str, Any]:
        return {
            "kubernetes_mount": self.kubernetes_mount,
            "allow_unauthenticated_encrypt": self.allow_unauthenticated_encrypt,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> BoundConfig:
        return cls(
            kubernetes_mount=str(doc.get("kubernetes_mount") or "kubernetes"),
            allow_unauthenticated_encrypt=bool(doc.get("allow_unauthenticated_encrypt", False)),
        )


@dataclass(frozen=True, repr=False)
class _Keyring:
    keys: dict[int, bytes]
    active: int

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "active": self.active,
                "keys": {str(v): base64.b64encode(k).decode() for v, k in self.keys.items()},
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> _Keyring:
        try:
            doc = orjson.loads(raw)
            keys = {int(v): base64.b64decode(k) for v, k in doc["keys"].items()}
            active = int(doc["active"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise DecryptionError() from None
        if active not in keys or any(len(k) != bound.ROOT_KEY_SIZE for k in keys.values()):
            raise DecryptionError()
        return cls(keys=keys, active=active)

    def __repr__(self) -> str:
        return f"_Keyring(active={self.active}, versions={sorted(self.keys)})"


def opener_of(token: TokenEntry, *, kubernetes_mount: str) -> BoundIdentity | None:
    """The ServiceAccount ``token`` logged in as at ``auth/<kubernetes_mount>/login``, else None."""
    if token.path != f"auth/{kubernetes_mount.strip('/')}/login":
        return None
    namespace = token.meta.get("service_account_namespace", "")
    name = token.meta.get("service_account_name", "")
    uid = token.meta.get("service_account_uid", "")
    if not namespace or not name:
        return None
    try:
        return BoundIdentity(namespace=namespace, name=name, uid=uid)
    except InvalidRequestError:
        return None


class BoundService:
    """Root keys (load, create, rotate), settings, sealing and opening."""

    def __init__(self, *, storage: StorageBackend, barrier: Barrier) -> None:
        self._storage = storage
        self._barrier = barrier
        self._cached: tuple[bytes, _Keyring] | None = None
        self._lock = asyncio.Lock()

    def ciphertext_families(self) -> list[CiphertextFamily]:
        return [
            CiphertextFamily.whole_records(
                KEYRING_KEY, lambda key: KEYRING_CONTEXT if key == KEYRING_KEY else None
            )
        ]

    # -- settings ---------------------------------------------------------------------------

    async def config(self) -> BoundConfig:
        raw = await self._storage.get(CONFIG_KEY)
        if raw is None:
            return BoundConfig()
        try:
            return BoundConfig.from_doc(orjson.loads(raw))
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            raise StorageError("the stored bound-value configuration is not valid") from None

    async def set_config(self, config: BoundConfig) -> None:
        async with self._storage.transaction() as tx:
            await tx.put(CONFIG_KEY, orjson.dumps(config.to_doc()))

    # -- keys -------------------------------------------------------------------------------

    async def _decode(self, blob: bytes) -> _Keyring:
        cached = self._cached
        if cached is not None and cached[0] == blob:
            return cached[1]
        keyring = _Keyring.from_bytes(await self._barrier.decrypt(blob, context=KEYRING_CONTEXT))
        self._cached = (blob, keyring)
        return keyring

    async def _keyring(
        self, *, add: bool = False, before_commit: Callable[[_Keyring], object] | None = None
    ) -> _Keyring:
        blob = await self._storage.get(KEYRING_KEY)
        if blob is not None and not add:
            return await self._decode(blob)
        async with self._lock, self._storage.transaction() as tx:
            blob = await tx.get(KEYRING_KEY, for_update=True)
            current = None if blob is None else await self._decode(blob)
            if current is not None and not add:
                return current  # another request created it meanwhile
            version = 1 if current is None else max(current.keys) + 1
            keys = {} if current is None else dict(current.keys)
            keys[version] = bound.generate_root_key()
            updated = _Keyring(keys=keys, active=version)
            fresh = self._barrier.encrypt(updated.to_bytes(), context=KEYRING_CONTEXT)
            await tx.put(KEYRING_KEY, fresh)
            if before_commit is not None:
                before_commit(updated)
        self._cached = (fresh, updated)
        return updated

    async def rotate(self, *, before_commit: Callable[[int], object] | None = None) -> int:
        """Add a root key version that seals from now on; return it.

        ``before_commit(version)`` runs in the transaction, before it commits.
        """
        hook = None if before_commit is None else lambda keyring: before_commit(keyring.active)
        return (await self._keyring(add=True, before_commit=hook)).active

    async def key_versions(
        self, *, before_commit: Callable[[int, list[int]], object] | None = None
    ) -> tuple[int, list[int]]:
        """``(active, every version)``; creates the first key if there is none yet.

        ``before_commit(active, versions)`` runs in the transaction that creates it, before it
        commits (the caller declares its answer there, :mod:`kustos.server.committing`).
        """
        hook = (
            None
            if before_commit is None
            else lambda keyring: before_commit(keyring.active, sorted(keyring.keys))
        )
        keyring = await self._keyring(before_commit=hook)
        return keyring.active, sorted(keyring.keys)

    # -- values -----------------------------------------------------------------------------

    async def seal(
        self,
        plaintext: bytes,
        *,
        identity: BoundIdentity,
        before_commit: Callable[[str, int], object] | None = None,
    ) -> tuple[str, int]:
        """The bound value of ``plaintext`` for ``identity`` and the key version used.

        When this creates the first root key, the value is sealed in that transaction and
        ``before_commit(value, version)`` runs there, before it commits (the caller declares
        its answer, :mod:`kustos.server.committing`).
        """
        made: list[tuple[str, int]] = []

        def seal_with(keyring: _Keyring) -> str:
            return bound.seal_value(
                keyring.keys[keyring.active], plaintext, version=keyring.active, identity=identity
            )

        def created(keyring: _Keyring) -> None:
            made.append((seal_with(keyring), keyring.active))
            if before_commit is not None:
                before_commit(*made[0])

        keyring = await self._keyring(before_commit=created)
        if made:
            return made[0]
        return seal_with(keyring), keyring.active

    async def open(self, value: BoundValue, *, opener: BoundIdentity) -> bytes:
        """Open ``value`` as ``opener``; :class:`DecryptionError` on any failure."""
        keyring = await self._keyring()
        return bound.open_value(keyring.keys, value, opener=opener)
