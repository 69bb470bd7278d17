"""Envelope encryption of stored secrets under a versioned keyring of KEKs.

Every call to :meth:`Keyring.encrypt` draws a fresh random 256-bit data key
(DEK), encrypts the plaintext with it (AES-256-GCM) and wraps the DEK with the
active key-encryption key (KEK, AES-256-GCM too). Both layers authenticate the
caller's ``context`` (built with :func:`context` from, for example, the mount
uuid, the path and the version of a secret), so a ciphertext copied to another
row does not decrypt there. The keyring itself (all KEKs) is serialized with
:meth:`Keyring.to_bytes` and stored wrapped by a key provider
(:mod:`kustos.keys`); this module never touches storage.

Stored format (format version 1), all integers big-endian::

    offset  size    field
    0       3       magic  b"KSE"
    3       1       format version, 0x01
    4       4       KEK version (uint32, >= 1)
    8       60      wrapped DEK = wrap nonce (12) || AES-GCM(KEK, DEK) (32) || tag (16)
    68      12      data nonce
    80      n + 16  AES-GCM(DEK, plaintext) (n) || tag (16)

The first 8 bytes are the *header*. Associated data::

    DEK layer:  context(b"kustos/envelope/dek",  header[0:8], ctx)
    data layer: context(b"kustos/envelope/data", header[0:4], ctx)

where ``ctx`` is the caller's context bytes and :func:`context` is the
length-prefixed encoding below. The DEK layer binds the KEK version; the data
layer binds only magic and format, so that :meth:`Keyring.rewrap` can replace
the wrapped DEK (new KEK version, new wrap nonce) and leave the data
ciphertext untouched. The data layer is still bound to the KEK version
through its DEK, which only unwraps under that version and context.

:func:`context` encodes each part as one type byte (``0x01`` bytes, ``0x02``
UTF-8 text, ``0x03`` a decimal integer in ASCII), a 4-byte length and the
payload, concatenated; no two different part lists share an encoding.

Attestations: :func:`attest` seals nothing (an empty plaintext) under
``attestation_context(ctx, document)`` = ``context(b"kustos/attest", ctx,
SHA-256(document))``, so the 96-byte result vouches for ``document`` in that
place: :func:`verify_attestation` fails for any other document, place or
key, like a changed ciphertext. It is an envelope like any other, so key
versions, rewrap and disabling apply to it unchanged. It protects records
that stay readable without decryption (a secret's version history).

Guarantees: confidentiality and integrity of the plaintext; any change to any
byte of the blob, another context, an unknown or disabled KEK version or a
truncated blob raise :class:`kustos.errors.DecryptionError` and nothing else.
Limits: the length of the plaintext is visible (overhead is 96 bytes). Misuse:
a context that does not identify the row (for example only the path, without
the version) lets an attacker with write access to storage swap ciphertexts
between the rows that share it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kustos.crypto import aead
from kustos.errors import DecryptionError, InvalidRequestError

__all__ = [
    "ATTESTATION_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "OVERHEAD",
    "KeyVersionInfo",
    "Keyring",
    "attest",
    "attestation_context",
    "context",
    "verify_attestation",
]

MAGIC: Final = b"KSE"
FORMAT_VERSION: Final = 1
_PREFIX: Final = MAGIC + bytes([FORMAT_VERSION])
_HEADER_SIZE: Final = len(_PREFIX) + 4
_WRAPPED_DEK_SIZE: Final = aead.OVERHEAD + aead.KEY_SIZE
_DATA_OFFSET: Final = _HEADER_SIZE + _WRAPPED_DEK_SIZE
OVERHEAD: Final = _DATA_OFFSET + aead.OVERHEAD
"""Bytes an envelope adds to the plaintext (96)."""

_DEK_LABEL: Final = b"kustos/envelope/dek"
_DATA_LABEL: Final = b"kustos/envelope/data"
_KEYRING_FORMAT: Final = 1
_MAX_KEK_VERSION: Final = 2**32 - 1
_DEK_CACHE: Final = 4096
_OPENED_CACHE: Final = 1024
_OPENED_MAX_BYTES: Final = 16 * 1024

RandBytes = Callable[[int], bytes]


def context(*parts: str | int | bytes) -> bytes:
    """Encode ``parts`` unambiguously, to be used as associated data.

    Each part becomes type byte + 4-byte big-endian length + payload; text is
    UTF-8, integers are decimal ASCII. ``context("a", "bc") != context("ab", "c")``
    and ``context(1) != context("1")``.
    """
    out = bytearray()
    for part in parts:
        if isinstance(part, bool):
            raise TypeError("context parts must be str, int or bytes, not bool")
        if isinstance(part, bytes | bytearray | memoryview):
            tag, payload = 0x01, bytes(part)
        elif isinstance(part, str):
            tag, payload = 0x02, part.encode("utf-8")
        elif isinstance(part, int):
            tag, payload = 0x03, str(part).encode("ascii")
        else:
            raise TypeError(f"context parts must be str, int or bytes, not {type(part).__name__}")
        out.append(tag)
        out += struct.pack(">I", len(payload))
        out += payload
    return bytes(out)


@dataclass(frozen=True)
class KeyVersionInfo:
    """What the keyring tells about one KEK version (never the key itself)."""

    version: int
    created: datetime
    disabled: bool


@dataclass(frozen=True)
class _Kek:
    version: int
    created: datetime
    disabled: bool
    key: bytes = field(repr=False)


def _header(version: int) -> bytes:
    return _PREFIX + struct.pack(">I", version)


# The fixed leading parts of both associated data strings, encoded once: the
# hot path only appends the header and the caller's context (same bytes as
# calling :func:`context` with every part, which the test vectors pin).
_DEK_AAD_LEAD: Final = context(_DEK_LABEL) + b"\x01" + struct.pack(">I", _HEADER_SIZE)
_DATA_AAD_LEAD: Final = context(_DATA_LABEL, _PREFIX)


def _dek_aad(header: bytes, ctx: bytes) -> bytes:
    return b"".join((_DEK_AAD_LEAD, header, b"\x01", len(ctx).to_bytes(4, "big"), ctx))


def _data_aad(ctx: bytes) -> bytes:
    return b"".join((_DATA_AAD_LEAD, b"\x01", len(ctx).to_bytes(4, "big"), ctx))


def _parse(blob: bytes) -> tuple[int, bytes, bytes]:
    """Split a blob into (KEK version, wrapped DEK, data part); DecryptionError if malformed."""
    if len(blob) < OVERHEAD or blob[: len(_PREFIX)] != _PREFIX:
        raise DecryptionError()
    (version,) = struct.unpack(">I", blob[len(_PREFIX) : _HEADER_SIZE])
    return version, blob[_HEADER_SIZE:_DATA_OFFSET], blob[_DATA_OFFSET:]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Keyring:
    """An immutable, versioned set of KEKs: encrypt with the active one, decrypt with any enabled one.

    Build one with :meth:`generate` or :meth:`from_bytes`; :meth:`rotate` and
    :meth:`disable` return a new keyring (store it, wrapped, before using it).
    ``to_bytes()`` is secret: it holds every KEK in the clear.
    """

    __slots__ = ("_active", "_ciphers", "_deks", "_keks", "_opened")

    _keks: tuple[_Kek, ...]
    _active: int
    _ciphers: dict[int, AESGCM]  # enabled KEK versions only, built once (not per call)
    # (header + wrapped DEK, context) -> (data cipher, data AAD) of blobs this keyring unwrapped.
    _deks: dict[tuple[bytes, bytes], tuple[AESGCM, bytes]]
    # id(blob) -> (blob, context, plaintext) of small blobs decrypted (verified) before; each entry
    # holds its blob, so the id cannot be reused while it is cached.
    _opened: dict[int, tuple[bytes, bytes, bytes]]

    def __init__(self, keks: Sequence[_Kek], *, active: int) -> None:
        """Private: use :meth:`generate` or :meth:`from_bytes`."""
        versions = [k.version for k in keks]
        if not keks or len(set(versions)) != len(versions):
            raise ValueError("a keyring needs at least one KEK and unique versions")
        by_version = {k.version: k for k in keks}
        if active not in by_version or by_version[active].disabled:
            raise ValueError("the active KEK version must exist and be enabled")
        for k in keks:
            if not 1 <= k.version <= _MAX_KEK_VERSION or len(k.key) != aead.KEY_SIZE:
                raise ValueError("KEK versions must be 1..2**32-1 and keys 32 bytes")
        object.__setattr__(self, "_keks", tuple(sorted(keks, key=lambda k: k.version)))
        object.__setattr__(self, "_active", active)
        object.__setattr__(
            self, "_ciphers", {k.version: AESGCM(k.key) for k in keks if not k.disabled}
        )
        object.__setattr__(self, "_deks", {})
        object.__setattr__(self, "_opened", {})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Keyring is immutable")

    # -- construction and serialization -------------------------------------------------

    @classmethod
    def generate(
        cls, *, now: datetime | None = None, randbytes: RandBytes = secrets.token_bytes
    ) -> Keyring:
        """Return a keyring with one fresh 256-bit KEK, version 1, active."""
        kek = _Kek(1, now or _utcnow(), False, aead.generate_key(randbytes=randbytes))
        return cls([kek], active=1)

    @classmethod
    def from_bytes(cls, data: bytes) -> Keyring:
        """Parse :meth:`to_bytes` output; ``ValueError`` (naming no key) if it is malformed."""
        try:
            doc: Any = json.loads(data)
            if doc.get("kustos_keyring") != _KEYRING_FORMAT:
                raise ValueError("not a Kustos keyring (format 1)")
            keks = [
                _Kek(
                    version=_as_int(item["version"]),
                    created=datetime.fromisoformat(item["created"]),
                    disabled=_as_bool(item["disabled"]),
                    key=base64.b64decode(item["key"], validate=True),
                )
                for item in doc["keys"]
            ]
            return cls(keks, active=_as_int(doc["active"]))
        except (KeyError, TypeError, AttributeError, binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"malformed keyring: {type(exc).__name__}") from None
        except json.JSONDecodeError:
            raise ValueError("malformed keyring: not JSON") from None

    def to_bytes(self) -> bytes:
        """Serialize every KEK (SECRET: wrap the result with a key provider before storing it).

        JSON: ``{"kustos_keyring": 1, "active": N, "keys": [{"version", "created",
        "disabled", "key": base64}]}`` with sorted keys, no whitespace.
        """
        doc = {
            "kustos_keyring": _KEYRING_FORMAT,
            "active": self._active,
            "keys": [
                {
                    "version": k.version,
                    "created": k.created.isoformat(),
                    "disabled": k.disabled,
                    "key": base64.b64encode(k.key).decode("ascii"),
                }
                for k in self._keks
            ],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")

    # -- versions -------------------------------------------------------------------------

    @property
    def active_version(self) -> int:
        """The KEK version new ciphertexts are wrapped with."""
        return self._active

    def versions(self) -> list[KeyVersionInfo]:
        """Every KEK version, oldest first, without key material."""
        return [KeyVersionInfo(k.version, k.created, k.disabled) for k in self._keks]

    def rotate(
        self, *, now: datetime | None = None, randbytes: RandBytes = secrets.token_bytes
    ) -> Keyring:
        """Return a keyring with a new KEK (highest version + 1) that becomes active."""
        version = self._keks[-1].version + 1
        kek = _Kek(version, now or _utcnow(), False, aead.generate_key(randbytes=randbytes))
        return Keyring([*self._keks, kek], active=version)

    def disable(self, version: int) -> Keyring:
        """Return a keyring where ``version`` no longer decrypts (nor rewraps).

        Rewrap everything first (:meth:`rewrap`). Refuses the active version and
        unknown versions with :class:`InvalidRequestError`.
        """
        if version == self._active:
            raise InvalidRequestError(
                f"cannot disable the active key version {version}; rotate first"
            )
        if not any(k.version == version for k in self._keks):
            raise InvalidRequestError(f"no key version {version} in the keyring")
        return Keyring(
            [replace(k, disabled=True) if k.version == version else k for k in self._keks],
            active=self._active,
        )

    # -- encryption -------------------------------------------------------------------------

    def encrypt(
        self, plaintext: bytes, *, context: bytes, randbytes: RandBytes = secrets.token_bytes
    ) -> bytes:
        """Encrypt ``plaintext`` under a fresh DEK wrapped by the active KEK, bound to ``context``.

        ``randbytes`` is called three times: DEK (32), wrap nonce (12), data
        nonce (12); pass a fixed source only to reproduce test vectors.
        """
        dek = randbytes(aead.KEY_SIZE)
        wrap_nonce = randbytes(aead.NONCE_SIZE)
        data_nonce = randbytes(aead.NONCE_SIZE)
        if len(dek) != aead.KEY_SIZE or len(wrap_nonce) != aead.NONCE_SIZE:
            raise ValueError("randbytes returned the wrong number of bytes")
        header = _header(self._active)
        wrapped = wrap_nonce + self._ciphers[self._active].encrypt(
            wrap_nonce, dek, _dek_aad(header, context)
        )
        data = aead.seal(dek, plaintext, aad=_data_aad(context), nonce=data_nonce)
        return header + wrapped + data

    def decrypt(self, blob: bytes, *, context: bytes) -> bytes:
        """Verify and decrypt; ``DecryptionError`` on any failure.

        The DEK layer is verified once per (header + wrapped DEK, context):
        the unwrapped DEK's cipher is kept (bounded) under exactly those bytes,
        so only the same wrapped DEK in the same place finds it. The data
        layer is verified on every call for a new blob object. The result
        for a small ``bytes`` blob is remembered (bounded) under that very
        object, together with the context: ``bytes`` cannot change, so the
        same object in the same place has the same, already verified,
        plaintext. A read cache that hands out the object it read from
        storage gets it back without an AES call; a blob read again from
        storage is a new object and is verified again.
        """
        opened = self._opened.get(id(blob))
        if opened is not None and opened[0] is blob and opened[1] == context:
            return opened[2]
        key = (blob[:_DATA_OFFSET], context)
        known = self._deks.get(key)
        if known is None:
            _, dek, _ = self._open(blob, context)
            known = (AESGCM(dek), _data_aad(context))
            if len(self._deks) >= _DEK_CACHE:
                self._deks.clear()
            self._deks[key] = known
        plaintext = _unseal_with(known[0], blob[_DATA_OFFSET:], known[1])
        if blob.__class__ is bytes and len(blob) <= _OPENED_MAX_BYTES:
            # verified: remember the result under the object itself (held, so its id is not reused)
            if len(self._opened) >= _OPENED_CACHE:
                self._opened.clear()
            self._opened[id(blob)] = (blob, context, plaintext)
        return plaintext

    def forget_plaintexts(self) -> None:
        """Drop every remembered :meth:`decrypt` result (after a change; the next reads verify again)."""
        self._opened.clear()

    def rewrap(
        self, blob: bytes, *, context: bytes, randbytes: RandBytes = secrets.token_bytes
    ) -> bytes:
        """Re-wrap the DEK of ``blob`` under the active KEK, after verifying the whole blob.

        The data nonce and ciphertext stay byte for byte the same. A blob that
        is already under the active version comes back unchanged. Raises
        ``DecryptionError`` like :meth:`decrypt`.
        """
        version, dek, data = self._open(blob, context)
        aead.unseal(dek, data, aad=_data_aad(context))  # verify before re-wrapping
        if version == self._active:
            return blob
        header = _header(self._active)
        wrap_nonce = randbytes(aead.NONCE_SIZE)
        if len(wrap_nonce) != aead.NONCE_SIZE:
            raise ValueError("randbytes returned the wrong number of bytes")
        wrapped = wrap_nonce + self._ciphers[self._active].encrypt(
            wrap_nonce, dek, _dek_aad(header, context)
        )
        return header + wrapped + data

    @staticmethod
    def key_version(blob: bytes) -> int:
        """The KEK version a blob is wrapped with (header only, nothing verified)."""
        version, _, _ = _parse(blob)
        return version

    # -- internals ----------------------------------------------------------------------------

    def _open(self, blob: bytes, ctx: bytes) -> tuple[int, bytes, bytes]:
        version, wrapped, data = _parse(blob)
        cipher = self._ciphers.get(version)  # unknown and disabled versions have none
        if cipher is None:
            raise DecryptionError()
        dek = _unseal_with(cipher, wrapped, _dek_aad(blob[:_HEADER_SIZE], ctx))
        return version, dek, data

    def __repr__(self) -> str:
        versions = [k.version for k in self._keks]
        disabled = [k.version for k in self._keks if k.disabled]
        return f"Keyring(active_version={self._active}, versions={versions}, disabled={disabled})"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Keyring cannot be pickled; use to_bytes() and wrap the result")


def _unseal_with(cipher: AESGCM, blob: bytes, aad: bytes) -> bytes:
    """:func:`kustos.crypto.aead.unseal` with a ready cipher (``blob`` is at least nonce + tag long)."""
    try:
        return cipher.decrypt(blob[: aead.NONCE_SIZE], blob[aead.NONCE_SIZE :], aad)
    except (InvalidTag, ValueError, TypeError, OverflowError):
        raise DecryptionError() from None


def _as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an integer")
    return value


def _as_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected a boolean")
    return value


_ATTEST_LABEL: Final = b"kustos/attest"
ATTESTATION_SIZE: Final = OVERHEAD
"""Bytes of an attestation (an envelope of nothing): 96."""


def attestation_context(ctx: bytes, document: bytes) -> bytes:
    """The context an attestation of ``document`` in place ``ctx`` is sealed under."""
    return context(_ATTEST_LABEL, ctx, hashlib.sha256(document).digest())


def attest(
    keyring: Keyring, document: bytes, *, context: bytes, randbytes: RandBytes = secrets.token_bytes
) -> bytes:
    """An attestation (:data:`ATTESTATION_SIZE` bytes) that ``document`` belongs at ``context``."""
    return keyring.encrypt(b"", context=attestation_context(context, document), randbytes=randbytes)


def verify_attestation(keyring: Keyring, tag: bytes, document: bytes, *, context: bytes) -> None:
    """Raise :class:`DecryptionError` unless ``tag`` attests ``document`` at ``context``."""
    if len(tag) != ATTESTATION_SIZE:  # the size of an envelope of nothing
        raise DecryptionError()
    keyring.decrypt(tag, context=attestation_context(context, document))
