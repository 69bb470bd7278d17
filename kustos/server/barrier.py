"""The barrier: the server's keyring, how it is unlocked, and encryption of every stored secret.

Vault calls the layer between the API and storage the *barrier*. Here it
holds the unsealed :class:`~kustos.crypto.envelope.Keyring` in memory and
keeps it in storage at ``core/keyring``, wrapped by the key provider with
associated data ``b"kustos/keyring"``. With the ``shamir`` provider the
public share configuration (counts, verifiers) is stored at
``core/seal-config``.

Lifecycle: :meth:`Barrier.load` at start reads what is stored and, for the
``local`` and ``pkcs11`` providers, unseals at once (auto-unseal).
:meth:`Barrier.initialize` creates the keyring (and the Shamir shares) once;
the caller's ``extra`` callback writes the root token in the same
transaction. With ``shamir`` the server is sealed after init, like Vault,
and :meth:`Barrier.unseal` takes shares until the threshold is reached.

Key management: :meth:`rotate_key` adds a KEK version that encrypts from now
on; :meth:`rewrap` moves every stored ciphertext to the newest version, in
batches of locked read-modify-writes (a record deleted meanwhile stays
deleted); :meth:`disable_key_version` refuses while any record still uses
the version. Which storage keys hold ciphertexts, and with which context, is
told by the engines as :class:`CiphertextFamily` values.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import orjson

from kustos.crypto.envelope import Keyring, KeyVersionInfo, attest, verify_attestation
from kustos.errors import (
    DecryptionError,
    InvalidRequestError,
    KeyProviderError,
    SealedError,
    StorageError,
)
from kustos.keys.base import KeyProvider
from kustos.keys.providers.shamir import ShamirConfig, ShamirKeyProvider
from kustos.server.times import Clock
from kustos.store.base import StorageBackend, Transaction

__all__ = [
    "KEYRING_AAD",
    "KEYRING_KEY",
    "SEAL_CONFIG_KEY",
    "Barrier",
    "CiphertextFamily",
    "RewrapReport",
    "SealStatus",
]

KEYRING_KEY: Final = "core/keyring"
SEAL_CONFIG_KEY: Final = "core/seal-config"
KEYRING_AAD: Final = b"kustos/keyring"
_BATCH: Final = 128

_log = logging.getLogger("kustos.server.barrier")


@dataclass(frozen=True)
class SealStatus:
    """What ``sys/seal-status`` reports."""

    type: str
    initialized: bool
    sealed: bool
    threshold: int
    shares: int
    progress: int


@dataclass(frozen=True)
class CiphertextFamily:
    """Storage records under ``prefix`` that hold a barrier ciphertext, and how to find and replace it.

    ``locate(key, record)`` returns ``(ciphertext, context)`` for a record
    that holds one, else ``None``; ``replace(record, ciphertext)`` returns the
    record with the ciphertext swapped (rewrap). :meth:`whole_records` covers
    the common case of a record that *is* the ciphertext.
    """

    prefix: str
    locate: Callable[[str, bytes], tuple[bytes, bytes] | None]
    replace: Callable[[bytes, bytes], bytes]

    @classmethod
    def whole_records(
        cls, prefix: str, context_for: Callable[[str], bytes | None]
    ) -> CiphertextFamily:
        """Records that are one ciphertext each; ``context_for(key)`` gives its context (or ``None``)."""

        def locate(key: str, record: bytes) -> tuple[bytes, bytes] | None:
            ctx = context_for(key)
            return None if ctx is None else (record, ctx)

        return cls(prefix=prefix, locate=locate, replace=lambda record, blob: blob)


@dataclass(frozen=True)
class RewrapReport:
    """The outcome of one :meth:`Barrier.rewrap` call."""

    active_version: int
    scanned: int
    rewrapped: int
    remaining: int
    failed: int


class Barrier:
    """Holds the unsealed keyring and encrypts/decrypts stored records with it."""

    def __init__(self, *, storage: StorageBackend, provider: KeyProvider, clock: Clock) -> None:
        self._storage = storage
        self._provider = provider
        self._clock = clock
        self._keyring: Keyring | None = None
        self._initialized = False
        self._seal_config: ShamirConfig | None = None
        self._lock = asyncio.Lock()

    # -- state -------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return self._initialized

    @property
    def sealed(self) -> bool:
        return self._keyring is None

    @property
    def serving(self) -> bool:
        """Initialized and unsealed: data paths may be served."""
        return self._keyring is not None and self._initialized

    @property
    def seal_type(self) -> str:
        return self._provider.name

    @property
    def auto_unseal(self) -> bool:
        """True when the provider can unseal without operators (``local``, ``pkcs11``)."""
        return not isinstance(self._provider, ShamirKeyProvider)

    def status(self) -> SealStatus:
        """The seal status as Vault's ``sys/seal-status`` reports it."""
        provider = self._provider
        if isinstance(provider, ShamirKeyProvider) and self._seal_config is not None:
            progress = provider.status(self._seal_config) if self.sealed else None
            cfg = self._seal_config
            return SealStatus(
                type="shamir",
                initialized=self._initialized,
                sealed=self.sealed,
                threshold=cfg.threshold,
                shares=cfg.shares,
                progress=progress.progress if progress else 0,
            )
        return SealStatus(
            type=provider.name,
            initialized=self._initialized,
            sealed=self.sealed,
            threshold=1 if self._initialized else 0,
            shares=1 if self._initialized else 0,
            progress=0,
        )

    async def load(self) -> None:
        """Read what is stored; auto-unseal when the provider allows it."""
        wrapped = await self._storage.get(KEYRING_KEY)
        self._initialized = wrapped is not None
        if isinstance(self._provider, ShamirKeyProvider) and self._initialized:
            self._seal_config = await self._read_seal_config()
        if wrapped is not None and self.auto_unseal and not self._provider.sealed:
            self._keyring = self._unwrap(wrapped)

    async def _read_seal_config(self) -> ShamirConfig:
        raw = await self._storage.get(SEAL_CONFIG_KEY)
        if raw is None:
            raise KeyProviderError(
                "the server was initialized with another key provider: no Shamir configuration is stored"
            )
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise StorageError("the stored Shamir configuration is not JSON") from None
        return ShamirConfig.from_dict(doc)

    def _unwrap(self, wrapped: bytes) -> Keyring:
        plain = self._provider.unwrap(wrapped, aad=KEYRING_AAD)
        try:
            return Keyring.from_bytes(plain)
        except ValueError:
            raise DecryptionError() from None

    def _wrap(self, keyring: Keyring) -> bytes:
        return self._provider.wrap(keyring.to_bytes(), aad=KEYRING_AAD)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- init, unseal, seal --------------------------------------------------------------

    async def initialize(
        self,
        *,
        secret_shares: int,
        secret_threshold: int,
        extra: Callable[[Transaction], Awaitable[None]] | None = None,
    ) -> list[str]:
        """Create and store the keyring; return the unseal shares (empty for auto-unseal).

        ``extra(tx)`` runs in the same transaction (the root token). With
        ``shamir`` the server is sealed afterwards, like Vault after init.
        """
        async with self._lock:
            if self._initialized:
                raise InvalidRequestError("Vault is already initialized")
            keyring = Keyring.generate(now=self._now())
            shares: list[str] = []
            seal_config: ShamirConfig | None = None
            provider = self._provider
            if isinstance(provider, ShamirKeyProvider):
                shares, seal_config = provider.initialize(
                    shares=secret_shares, threshold=secret_threshold
                )
            try:
                wrapped = self._wrap(keyring)
                async with self._storage.transaction() as tx:
                    if await tx.get(KEYRING_KEY, for_update=True) is not None:
                        raise InvalidRequestError("Vault is already initialized")
                    if seal_config is not None:
                        await tx.put(SEAL_CONFIG_KEY, orjson.dumps(seal_config.to_dict()))
                    await tx.put(KEYRING_KEY, wrapped)
                    if extra is not None:
                        await extra(tx)
            except BaseException:
                if isinstance(provider, ShamirKeyProvider):
                    provider.seal()
                raise
            self._initialized = True
            self._seal_config = seal_config
            if isinstance(provider, ShamirKeyProvider):
                provider.seal()
                self._keyring = None
            else:
                self._keyring = keyring
            return shares

    async def unseal(self, *, key: str | None, reset: bool = False) -> SealStatus:
        """Submit one Shamir share (or ``reset``); auto-unseal providers just unseal."""
        async with self._lock:
            if not self._initialized:
                raise InvalidRequestError("Vault is not initialized")
            provider = self._provider
            if not self.sealed:
                return self.status()
            if isinstance(provider, ShamirKeyProvider):
                config = self._seal_config or await self._read_seal_config()
                self._seal_config = config
                if reset:
                    provider.reset()
                    return self.status()
                if not key:
                    raise InvalidRequestError(
                        "missing required parameter 'key' (an unseal key share)"
                    )
                progress = provider.submit(key, config)
                if progress.sealed:
                    return self.status()
            wrapped = await self._storage.get(KEYRING_KEY)
            if wrapped is None:
                raise StorageError("the stored keyring disappeared")
            try:
                self._keyring = self._unwrap(wrapped)
            except DecryptionError:
                if isinstance(provider, ShamirKeyProvider):
                    provider.seal()
                raise KeyProviderError("the unseal key does not open the stored keyring") from None
            return self.status()

    def seal(self) -> None:
        """Forget the keyring (and, with ``shamir``, the root key): data paths answer 503."""
        self._keyring = None
        if isinstance(self._provider, ShamirKeyProvider):
            self._provider.seal()

    def close(self) -> None:
        self._keyring = None
        self._provider.close()

    # -- encryption ----------------------------------------------------------------------

    def _require(self) -> Keyring:
        keyring = self._keyring
        if keyring is None:
            raise SealedError()
        return keyring

    def encrypt(self, plaintext: bytes, *, context: bytes) -> bytes:
        """Envelope-encrypt ``plaintext`` bound to ``context`` under the active KEK."""
        return self._require().encrypt(plaintext, context=context)

    def forget_plaintexts(self) -> None:
        """Drop the keyring's remembered results (:meth:`Keyring.decrypt`): a secret changed or was destroyed."""
        if self._keyring is not None:
            self._keyring.forget_plaintexts()

    def decrypt_loaded(self, blob: bytes, *, context: bytes) -> bytes:
        """:meth:`decrypt` with the keyring as loaded, synchronously (the read path's first try).

        Raises ``DecryptionError`` also for a blob under a KEK version this
        replica has not loaded yet: callers then fall back to :meth:`decrypt`.
        """
        return self._require().decrypt(blob, context=context)

    async def decrypt(self, blob: bytes, *, context: bytes) -> bytes:
        """Verify and decrypt; ``DecryptionError`` on any failure.

        A blob wrapped by a KEK version newer than ours (another replica
        rotated) makes the barrier reload the keyring once and retry.
        """
        keyring = self._require()
        try:
            return keyring.decrypt(blob, context=context)
        except DecryptionError:
            if not await self._reload_if_newer(blob):
                raise
        return self._require().decrypt(blob, context=context)

    def attest(self, document: bytes, *, context: bytes) -> bytes:
        """An attestation that ``document`` belongs at ``context`` (:func:`kustos.crypto.envelope.attest`)."""
        return attest(self._require(), document, context=context)

    def verify_attestation_loaded(self, tag: bytes, document: bytes, *, context: bytes) -> None:
        """:meth:`verify_attestation` with the keyring as loaded (``DecryptionError`` also for a
        newer KEK version; callers then fall back to :meth:`verify_attestation`)."""
        verify_attestation(self._require(), tag, document, context=context)

    async def verify_attestation(self, tag: bytes, document: bytes, *, context: bytes) -> None:
        """Raise ``DecryptionError`` unless ``tag`` attests ``document`` at ``context`` (reloading
        the keyring once when the tag uses a KEK version another replica added)."""
        try:
            self.verify_attestation_loaded(tag, document, context=context)
        except DecryptionError:
            if not await self._reload_if_newer(tag):
                raise
            self.verify_attestation_loaded(tag, document, context=context)

    async def _reload_if_newer(self, blob: bytes) -> bool:
        keyring = self._require()
        try:
            version = Keyring.key_version(blob)
        except DecryptionError:
            return False
        if version <= max(v.version for v in keyring.versions()):
            return False
        wrapped = await self._storage.get(KEYRING_KEY)
        if wrapped is None:
            return False
        self._keyring = self._unwrap(wrapped)
        return True

    # -- key management --------------------------------------------------------------------

    def key_versions(self) -> list[KeyVersionInfo]:
        return self._require().versions()

    @property
    def active_version(self) -> int:
        return self._require().active_version

    async def _update_keyring(self, change: Callable[[Keyring], Keyring]) -> Keyring:
        async with self._lock:
            self._require()
            async with self._storage.transaction() as tx:
                wrapped = await tx.get(KEYRING_KEY, for_update=True)
                if wrapped is None:
                    raise StorageError("the stored keyring disappeared")
                updated = change(self._unwrap(wrapped))
                await tx.put(KEYRING_KEY, self._wrap(updated))
            self._keyring = updated
            return updated

    async def rotate_key(self) -> KeyVersionInfo:
        """Add a new KEK version; new ciphertexts use it from now on."""
        updated = await self._update_keyring(lambda k: k.rotate(now=self._now()))
        return updated.versions()[-1]

    async def rewrap(
        self,
        families: Sequence[CiphertextFamily],
        *,
        limit: int | None = None,
        invalidate: Callable[[Sequence[str]], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> RewrapReport:
        """Re-wrap stored ciphertexts under the active KEK version; at most ``limit`` of them.

        Each batch is one transaction that re-reads every record with a lock,
        so concurrent writes and deletes win. Records that fail to verify are
        counted in ``failed`` and left as they are.
        """
        keyring = self._require()
        active = keyring.active_version
        scanned = 0
        pending: list[tuple[str, CiphertextFamily]] = []
        remaining = 0
        for family in families:
            async for key, value in self._storage.scan(family.prefix):
                found = family.locate(key, value)
                if found is None:
                    continue
                scanned += 1
                try:
                    version = Keyring.key_version(found[0])
                except DecryptionError:
                    continue
                if version == active:
                    continue
                if limit is not None and len(pending) >= limit:
                    remaining += 1
                    continue
                pending.append((key, family))
        rewrapped = failed = 0
        for start in range(0, len(pending), _BATCH):
            batch = pending[start : start + _BATCH]
            done, broken = await self._rewrap_batch(batch)
            rewrapped += done
            failed += broken
            if invalidate is not None:
                invalidate([key for key, _ in batch])
            if on_progress is not None:
                on_progress(rewrapped)
        if failed:
            _log.warning(
                "rewrap left records that failed to verify", extra={"error": f"{failed} records"}
            )
        return RewrapReport(
            active_version=active,
            scanned=scanned,
            rewrapped=rewrapped,
            remaining=remaining,
            failed=failed,
        )

    async def _rewrap_batch(self, batch: Sequence[tuple[str, CiphertextFamily]]) -> tuple[int, int]:
        keyring = self._require()
        done = broken = 0
        async with self._storage.transaction() as tx:
            for key, family in batch:
                record = await tx.get(key, for_update=True)
                found = None if record is None else family.locate(key, record)
                if record is None or found is None:
                    continue
                blob, ctx = found
                try:
                    if Keyring.key_version(blob) == keyring.active_version:
                        continue
                    fresh = keyring.rewrap(blob, context=ctx)
                except DecryptionError:
                    broken += 1
                    continue
                await tx.put(key, family.replace(record, fresh))
                done += 1
        return done, broken

    async def count_using(self, families: Sequence[CiphertextFamily], version: int) -> int:
        """How many stored ciphertexts are wrapped by KEK ``version``."""
        count = 0
        for family in families:
            async for key, value in self._storage.scan(family.prefix):
                found = family.locate(key, value)
                if found is None:
                    continue
                try:
                    if Keyring.key_version(found[0]) == version:
                        count += 1
                except DecryptionError:
                    continue
        return count

    async def disable_key_version(self, version: int, families: Sequence[CiphertextFamily]) -> None:
        """Disable KEK ``version`` once no stored record uses it any more."""
        keyring = self._require()
        if version == keyring.active_version:
            raise InvalidRequestError(
                f"cannot disable the active key version {version}; rotate first"
            )
        if not any(v.version == version for v in keyring.versions()):
            raise InvalidRequestError(f"no key version {version} in the keyring")
        in_use = await self.count_using(families, version)
        if in_use:
            raise InvalidRequestError(
                f"key version {version} still protects {in_use} stored records; run rewrap first"
            )
        await self._update_keyring(lambda k: k.disable(version))
