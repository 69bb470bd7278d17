"""The ``shamir`` key provider: the root key exists only in memory, rebuilt from unseal shares.

Vault's model: at ``initialize`` a random 256-bit root key is split into ``n``
shares (any ``t`` of them rebuild it) with :mod:`kustos.crypto.shamir`; the
shares are returned once, base64-encoded, and never stored. What is stored
(by the caller, through :meth:`ShamirConfig.to_dict`) is public: ``n``, ``t``,
one verifier per share (SHA-256 of a random 16-byte salt followed by the
share) and a key check (an AES-GCM tag made with the root key). A process
starts sealed; operators :meth:`~ShamirKeyProvider.submit` shares until the
threshold is reached, then the provider holds the root key and can wrap and
unwrap the keyring.

Each submitted share is checked against the verifiers at once: a malformed,
foreign or repeated share is rejected with
:class:`~kustos.errors.InvalidRequestError` naming the problem and does not
count towards the threshold (Vault, which has no verifiers, only notices a
wrong share after the threshold). Shares are accepted in base64 (as printed)
or in hex, like Vault.

Limits: the verifiers let anyone who reads the storage check a guessed share,
which is harmless because a share has 256 bits of entropy. Root key and
pending shares live in Python memory, which cannot be reliably wiped;
:meth:`~ShamirKeyProvider.seal` drops every reference to them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypedDict

from kustos.crypto import aead, shamir
from kustos.crypto.envelope import context
from kustos.errors import (
    ConfigError,
    DecryptionError,
    InvalidRequestError,
    KeyProviderError,
    SealedError,
)
from kustos.sensitive import Sensitive

__all__ = [
    "ShamirConfig",
    "ShamirConfigDict",
    "ShamirKeyProvider",
    "ShareVerifier",
    "ShareVerifierDict",
    "UnsealProgress",
]

_WRAP_LABEL: Final = b"kustos/keys/shamir"
_CHECK_LABEL: Final = b"kustos/keys/shamir/key-check"
_SHARE_SIZE: Final = aead.KEY_SIZE + 1
_SALT_SIZE: Final = 16
_MAX_SHARES: Final = 255


class ShareVerifierDict(TypedDict):
    """One share verifier as stored: base64 salt, hex SHA-256 of salt || share."""

    salt: str
    sha256: str


class ShamirConfigDict(TypedDict):
    """The stored (public) Shamir configuration."""

    type: Literal["shamir"]
    shares: int
    threshold: int
    share_verifiers: list[ShareVerifierDict]
    key_check: str


@dataclass(frozen=True)
class ShareVerifier:
    """Recognizes one share without revealing it: SHA-256(salt || share)."""

    salt: bytes
    digest: bytes

    def matches(self, share: bytes) -> bool:
        return hmac.compare_digest(hashlib.sha256(self.salt + share).digest(), self.digest)


@dataclass(frozen=True)
class ShamirConfig:
    """Public facts about the shares: ``n``, ``t``, verifiers and a check of the rebuilt key."""

    shares: int
    threshold: int
    verifiers: tuple[ShareVerifier, ...]
    key_check: bytes

    def to_dict(self) -> ShamirConfigDict:
        """JSON-serializable form for storage."""
        return {
            "type": "shamir",
            "shares": self.shares,
            "threshold": self.threshold,
            "share_verifiers": [
                {"salt": base64.b64encode(v.salt).decode("ascii"), "sha256": v.digest.hex()}
                for v in self.verifiers
            ],
            "key_check": base64.b64encode(self.key_check).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: ShamirConfigDict | dict[str, Any]) -> ShamirConfig:
        """Parse :meth:`to_dict` output; :class:`ConfigError` if it is malformed."""
        try:
            if data["type"] != "shamir":
                raise ValueError("type is not 'shamir'")
            verifiers = tuple(
                ShareVerifier(
                    salt=base64.b64decode(v["salt"], validate=True),
                    digest=bytes.fromhex(v["sha256"]),
                )
                for v in data["share_verifiers"]
            )
            config = cls(
                shares=_as_int(data["shares"]),
                threshold=_as_int(data["threshold"]),
                verifiers=verifiers,
                key_check=base64.b64decode(data["key_check"], validate=True),
            )
            _check_counts(shares=config.shares, threshold=config.threshold)
            if len(verifiers) != config.shares or any(len(v.digest) != 32 for v in verifiers):
                raise ValueError("one SHA-256 verifier per share is required")
        except (KeyError, TypeError, ValueError, binascii.Error, InvalidRequestError) as exc:
            raise ConfigError(f"stored Shamir configuration is malformed: {exc}") from None
        return config


@dataclass(frozen=True)
class UnsealProgress:
    """Where unsealing stands, as Vault's ``sys/seal-status`` reports it (``t``, ``n``, ``progress``)."""

    sealed: bool
    progress: int
    threshold: int
    shares: int


class ShamirKeyProvider:
    """Holds the root key once enough unseal shares were submitted; sealed until then.

    Thread-safe: the server may call :meth:`submit` from several requests.
    """

    def __init__(self, *, randbytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self._randbytes = randbytes
        self._lock = threading.Lock()
        self._key: Sensitive[bytes] | None = None
        self._pending: list[Sensitive[bytes]] = []
        self._pending_for: ShamirConfig | None = None

    @property
    def name(self) -> str:
        return "shamir"

    @property
    def sealed(self) -> bool:
        return self._key is None

    @property
    def progress(self) -> int:
        """How many valid, distinct shares were submitted towards the current unseal."""
        return len(self._pending)

    def initialize(self, *, shares: int, threshold: int) -> tuple[list[str], ShamirConfig]:
        """Create a root key, split it, and return (base64 shares, config to store).

        The shares are returned this once; print them to the operator and do
        not store them. Afterwards the provider holds the new root key (so the
        caller can wrap a fresh keyring); call :meth:`seal` for Vault's
        sealed-after-init state. ``threshold`` must be 1 only when
        ``shares`` is 1, as in Vault.
        """
        _check_counts(shares=shares, threshold=threshold)
        key = aead.generate_key(randbytes=self._randbytes)
        if shares == 1:
            parts = [key + b"\x01"]  # degree-0 polynomial: the share value is the key itself
        else:
            parts = shamir.split(key, shares, threshold, randbytes=self._randbytes)
        verifiers = []
        for part in parts:
            salt = self._randbytes(_SALT_SIZE)
            verifiers.append(ShareVerifier(salt=salt, digest=hashlib.sha256(salt + part).digest()))
        key_check = aead.seal(key, b"", aad=_CHECK_LABEL, nonce=self._randbytes(aead.NONCE_SIZE))
        config = ShamirConfig(
            shares=shares, threshold=threshold, verifiers=tuple(verifiers), key_check=key_check
        )
        with self._lock:
            self._key = Sensitive(key)
            self._pending = []
            self._pending_for = None
        return [base64.b64encode(p).decode("ascii") for p in parts], config

    def submit(self, share_b64: str, config: ShamirConfig) -> UnsealProgress:
        """Add one unseal share (base64 or hex); unseal when ``config.threshold`` are in.

        Raises :class:`InvalidRequestError` for a malformed share, a share that
        is not one of this server's, or one already submitted; none of them
        counts. When already unsealed, nothing happens.
        """
        with self._lock:
            if self._key is not None:
                return UnsealProgress(False, 0, config.threshold, config.shares)
            if self._pending_for != config:
                self._pending = []
                self._pending_for = config
            share = _decode_share(share_b64)
            if not any(v.matches(share) for v in config.verifiers):
                raise InvalidRequestError("unseal share is not one of this server's key shares")
            if any(hmac.compare_digest(p.reveal(), share) for p in self._pending):
                raise InvalidRequestError(
                    f"unseal share was already submitted (progress {len(self._pending)}/{config.threshold})"
                )
            self._pending.append(Sensitive(share))
            if len(self._pending) < config.threshold:
                return UnsealProgress(True, len(self._pending), config.threshold, config.shares)
            parts = [p.reveal() for p in self._pending]
            self._pending = []
            self._pending_for = None
            key = parts[0][:-1] if len(parts) == 1 else shamir.combine(parts)
            try:
                aead.unseal(key, config.key_check, aad=_CHECK_LABEL)
            except DecryptionError:
                raise KeyProviderError(
                    "the rebuilt root key does not match the stored key check"
                ) from None
            self._key = Sensitive(key)
            return UnsealProgress(False, 0, config.threshold, config.shares)

    def status(self, config: ShamirConfig) -> UnsealProgress:
        """Current state for ``sys/seal-status``."""
        with self._lock:
            progress = len(self._pending) if self._pending_for == config else 0
            return UnsealProgress(self._key is None, progress, config.threshold, config.shares)

    def reset(self) -> None:
        """Forget the shares submitted so far (Vault's ``unseal`` with ``reset: true``)."""
        with self._lock:
            self._pending = []
            self._pending_for = None

    def seal(self) -> None:
        """Forget the root key and any pending shares."""
        with self._lock:
            self._key = None
            self._pending = []
            self._pending_for = None

    def wrap(self, plaintext: bytes, *, aad: bytes) -> bytes:
        return aead.seal(self._require_key(), plaintext, aad=context(_WRAP_LABEL, aad))

    def unwrap(self, blob: bytes, *, aad: bytes) -> bytes:
        return aead.unseal(self._require_key(), blob, aad=context(_WRAP_LABEL, aad))

    def close(self) -> None:
        self.seal()

    def _require_key(self) -> bytes:
        key = self._key
        if key is None:
            raise SealedError()
        return key.reveal()

    def __repr__(self) -> str:
        return f"ShamirKeyProvider(sealed={self.sealed}, progress={self.progress})"


def _check_counts(*, shares: int, threshold: int) -> None:
    if isinstance(shares, bool) or isinstance(threshold, bool):
        raise InvalidRequestError("secret_shares and secret_threshold must be integers")
    if not 1 <= shares <= _MAX_SHARES:
        raise InvalidRequestError(
            f"secret_shares must be between 1 and {_MAX_SHARES}, got {shares}"
        )
    if not 1 <= threshold <= shares:
        raise InvalidRequestError(
            f"secret_threshold must be between 1 and secret_shares ({shares}), got {threshold}"
        )
    if threshold == 1 and shares > 1:
        raise InvalidRequestError(
            "secret_threshold must be greater than one when there are several shares"
        )


def _decode_share(text: str) -> bytes:
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError("malformed unseal share: empty")
    text = text.strip()
    try:
        share = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:
            share = bytes.fromhex(text)
        except ValueError:
            raise InvalidRequestError("malformed unseal share: neither base64 nor hex") from None
    if len(share) != _SHARE_SIZE:
        raise InvalidRequestError(
            f"malformed unseal share: expected {_SHARE_SIZE} bytes, got {len(share)}"
        )
    return share


def _as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an integer")
    return value
