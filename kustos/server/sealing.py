"""Server-managed sealing keys: the GitOps sealing keyring kept behind the barrier.

The :class:`~kustos.gitops.sealing.SealingKeyring` (RSA sealing keys, private
halves included) is one record, ``core/sealing/keyring``, encrypted by the
barrier (so the server's key provider, local key, Shamir or a PKCS#11 HSM,
protects it; it is never stored in plaintext) with the context
``kustos/sealing-keyring``. It is listed as a :class:`CiphertextFamily`, so
``sys/rewrap`` moves it to the newest barrier key and ``sys/keyring/disable``
counts it. The renewal settings are ``core/sealing/config`` (not secret).

:class:`SealingService` answers what the routes in
:mod:`kustos.server.routes.sealing` need. The first key is generated at
first use; renewal (default every 30 days, plus a key cut-off time) is
checked lazily on every use and by a timer task (:meth:`SealingService.start`),
and old keys are kept for unsealing. RSA key generation runs in a worker
thread, outside any storage transaction; the write re-checks the policy in a
locked read-modify-write, so two replicas renewing at once add one key.

The parsed keyring is cached in memory and keyed by the stored ciphertext:
each use costs one storage read, and a key added by another replica is seen
on the next use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from kustos.crypto.sealing import SealingKeyPair, generate_sealing_key
from kustos.errors import InvalidRequestError, StorageError
from kustos.gitops.sealing import (
    KEYRING_AAD,
    RenewalPolicy,
    SealingKeyEntry,
    SealingKeyring,
    renew,
)
from kustos.server.barrier import Barrier, CiphertextFamily
from kustos.server.times import Clock
from kustos.store.base import StorageBackend

__all__ = [
    "CONFIG_KEY",
    "DEFAULT_CHECK_INTERVAL",
    "KEYRING_KEY",
    "MAX_KEY_BITS",
    "MIN_KEY_BITS",
    "SealingConfig",
    "SealingService",
]

KEYRING_KEY: Final = "core/sealing/keyring"
CONFIG_KEY: Final = "core/sealing/config"
DEFAULT_CHECK_INTERVAL: Final = 60.0
"""Seconds between two renewal checks of the timer task."""
MIN_KEY_BITS: Final = 2048
MAX_KEY_BITS: Final = 4096
"""Sealing key sizes accepted: RSA-4096 is Sealed Secrets' default; larger keys take minutes to generate."""

_log = logging.getLogger("kustos.server.sealing")

Generator = Callable[[datetime, int], SealingKeyPair]


def _generate(now: datetime, bits: int) -> SealingKeyPair:
    return generate_sealing_key(now=now, bits=bits)


@dataclass(frozen=True)
class SealingConfig:
    """Renewal settings (``sys/sealing/config``): period (None: never), cut-off time, key size."""

    renew_period: timedelta | None = timedelta(days=30)
    key_cutoff_time: datetime | None = None
    key_bits: int = 4096

    def policy(self) -> RenewalPolicy:
        return RenewalPolicy(period=self.renew_period, cutoff=self.key_cutoff_time)

    def to_doc(self) -> dict[str, Any]:
        return {
            "renew_period": int(self.renew_period.total_seconds()) if self.renew_period else 0,
            "key_cutoff_time": self.key_cutoff_time.isoformat() if self.key_cutoff_time else None,
            "key_bits": self.key_bits,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> SealingConfig:
        period = int(doc.get("renew_period") or 0)
        cutoff = doc.get("key_cutoff_time")
        return cls(
            renew_period=timedelta(seconds=period) if period > 0 else None,
            key_cutoff_time=datetime.fromisoformat(cutoff) if cutoff else None,
            key_bits=_stored_bits(doc.get("key_bits")),
        )


def _stored_bits(value: object) -> int:
    """The stored key size; one outside the accepted range (stored by an older release) becomes 4096."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and MIN_KEY_BITS <= value <= MAX_KEY_BITS
    ):
        return value
    if value not in (None, 0):
        _log.warning(
            "stored sealing key_bits is out of range; using 4096", extra={"error": str(value)[:40]}
        )
    return MAX_KEY_BITS


class SealingService:
    """The sealing keyring of one server: load, renew, rotate, import, configure."""

    def __init__(
        self,
        *,
        storage: StorageBackend,
        barrier: Barrier,
        clock: Clock,
        generate: Generator = _generate,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
    ) -> None:
        self._storage = storage
        self._barrier = barrier
        self._clock = clock
        self._generate = generate
        self._check_interval = check_interval
        self._cached: tuple[bytes, SealingKeyring] | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- storage ----------------------------------------------------------------------------

    def now(self) -> datetime:
        """The server clock's time (injectable through ``clock``)."""
        return datetime.fromtimestamp(self._clock(), UTC)

    def ciphertext_families(self) -> list[CiphertextFamily]:
        """The keyring record, for rewrap and key-version checks."""
        return [
            CiphertextFamily.whole_records(
                KEYRING_KEY, lambda key: KEYRING_AAD if key == KEYRING_KEY else None
            )
        ]

    async def _decode(self, blob: bytes | None) -> SealingKeyring:
        if blob is None:
            return SealingKeyring()
        cached = self._cached
        if cached is not None and cached[0] == blob:
            return cached[1]
        plain = await self._barrier.decrypt(blob, context=KEYRING_AAD)
        keyring = SealingKeyring.from_bytes(plain)
        self._cached = (blob, keyring)
        return keyring

    async def stored_keyring(self) -> SealingKeyring:
        """The keyring as stored (empty before the first key), without renewing."""
        return await self._decode(await self._storage.get(KEYRING_KEY))

    async def config(self) -> SealingConfig:
        raw = await self._storage.get(CONFIG_KEY)
        if raw is None:
            return SealingConfig()
        try:
            return SealingConfig.from_doc(orjson.loads(raw))
        except (orjson.JSONDecodeError, TypeError, ValueError):
            raise StorageError("the stored sealing configuration is not valid") from None

    @staticmethod
    def check_config(config: SealingConfig) -> None:
        """Refuse settings :meth:`set_config` would refuse (``InvalidRequestError``)."""
        if not MIN_KEY_BITS <= config.key_bits <= MAX_KEY_BITS:
            raise InvalidRequestError(f"key_bits must be between {MIN_KEY_BITS} and {MAX_KEY_BITS}")
        config.policy()  # validates the period

    async def set_config(self, config: SealingConfig) -> SealingConfig:
        """Store new settings; a cut-off time in the past renews the key on next use."""
        self.check_config(config)
        async with self._storage.transaction() as tx:
            await tx.put(CONFIG_KEY, orjson.dumps(config.to_doc()))
        return config

    async def _write(
        self, change: Callable[[SealingKeyring], SealingKeyring | None]
    ) -> SealingKeyring:
        """Locked read-modify-write of the keyring; ``change`` returns None to leave it as is."""
        async with self._lock, self._storage.transaction() as tx:
            blob = await tx.get(KEYRING_KEY, for_update=True)
            current = await self._decode(blob)
            updated = change(current)
            if updated is None:
                return current
            fresh = self._barrier.encrypt(updated.to_bytes().reveal(), context=KEYRING_AAD)
            await tx.put(KEYRING_KEY, fresh)
        self._cached = (fresh, updated)
        return updated

    # -- keys ---------------------------------------------------------------------------------

    async def keyring(
        self, *, renewed: Callable[[SealingKeyring], object] | None = None
    ) -> SealingKeyring:
        """The current keyring, renewed first when the policy says a key is due (lazy renewal).

        ``renewed(keyring)`` runs in the transaction that renews it, before it commits (a
        read that renews declares its answer there, :mod:`kustos.server.committing`).
        """
        keyring = await self.stored_keyring()
        config = await self.config()
        if config.policy().renewal_due(keyring, now=self.now()):
            keyring, _ = await self.renew_if_due(config=config, renewed=renewed)
        return keyring

    async def renew_if_due(
        self,
        *,
        config: SealingConfig | None = None,
        force: bool = False,
        before_commit: Callable[[SealingKeyEntry], object] | None = None,
        renewed: Callable[[SealingKeyring], object] | None = None,
    ) -> tuple[SealingKeyring, SealingKeyEntry | None]:
        """Add a key when due (or ``force``); returns the keyring and the new entry, if any.

        ``before_commit(entry)`` and ``renewed(keyring)`` run in the transaction that adds the
        key, before it commits.
        """
        config = config or await self.config()
        policy = RenewalPolicy(period=timedelta(microseconds=1)) if force else config.policy()
        now = self.now()
        before = await self.stored_keyring()
        if not policy.renewal_due(before, now=now):
            return before, None
        pair = await asyncio.to_thread(self._generate, now, config.key_bits)
        added: list[SealingKeyEntry] = []

        def change(current: SealingKeyring) -> SealingKeyring | None:
            if not force and not policy.renewal_due(current, now=now):
                return None  # another replica renewed meanwhile
            updated, entry = renew(current, policy=policy, now=now, generate=lambda _: pair)
            if entry is None:
                return None
            added.append(entry)
            if before_commit is not None:
                before_commit(entry)
            if renewed is not None:
                renewed(updated)
            return updated

        keyring = await self._write(change)
        if added:
            _log.info("sealing key added", extra={"key_id": added[0].key_id})
        return keyring, (added[0] if added else None)

    async def rotate(
        self, *, before_commit: Callable[[SealingKeyEntry], object] | None = None
    ) -> SealingKeyEntry:
        """A new sealing key now (``sys/sealing/keys/rotate``); ``before_commit`` as in :meth:`renew_if_due`."""
        _, entry = await self.renew_if_due(force=True, before_commit=before_commit)
        if entry is None:  # pragma: no cover - force always adds
            raise StorageError("the new sealing key was not stored")
        return entry

    async def import_entries(
        self,
        entries: Sequence[SealingKeyEntry],
        *,
        before_commit: Callable[[SealingKeyring, list[tuple[SealingKeyEntry, bool]]], object]
        | None = None,
    ) -> list[tuple[SealingKeyEntry, bool]]:
        """Add keys (Sealed Secrets key Secrets, a backup); returns each with whether it was new.

        ``before_commit(keyring, results)`` runs in the transaction that adds them, before it
        commits (not at all when every key was known).
        """
        if not entries:
            raise InvalidRequestError("nothing to import: no sealing key found in the request")
        seen: list[str] = []

        def change(current: SealingKeyring) -> SealingKeyring | None:
            seen.extend(e.key_id for e in current.entries)
            updated = current.with_entries(entries)
            if len(updated) == len(current):
                return None
            if before_commit is not None:
                before_commit(updated, [(e, e.key_id not in seen) for e in entries])
            return updated

        await self._write(change)
        return [(e, e.key_id not in seen) for e in entries]

    # -- timer --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the renewal timer task (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sealing-renewal")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def check(self) -> SealingKeyEntry | None:
        """One timer tick: renew when due, if the server is unsealed and a keyring exists."""
        if self._barrier.sealed or not self._barrier.initialized:
            return None
        if await self._storage.get(KEYRING_KEY) is None:
            return None  # the first key is made at first use, with the configured size
        _, entry = await self.renew_if_due()
        return entry

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval)
            try:
                await self.check()
            except Exception:
                _log.exception("sealing key renewal check failed")
