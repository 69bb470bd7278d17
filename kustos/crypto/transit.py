"""The cryptography of the transit engine: Vault's ciphertext format, its AEADs, key derivation and HMACs.

The transit engine (:mod:`kustos.server.engines.transit`) encrypts data for
callers and never stores it; what it stores are *named keys*, each a list of
versions. This module holds the pure parts, so the server never touches
``cryptography`` itself.

Wire format (what Vault's transit engine answers, byte for byte)::

    vault:v<N>:<base64(nonce (12) || ciphertext || tag (16))>

with ``N`` the key version and standard base64 with padding. Both key types
use a 96-bit random nonce, a 128-bit tag and no associated data, as Vault
does: ``aes256-gcm96`` (AES-256-GCM) and ``chacha20-poly1305``.

Derived keys (``derived=true``): the key used for one request is
HKDF-SHA256 over the version's key, no salt, ``info`` = the caller's
``context`` (Vault's ``hkdf_sha256`` KDF), 32 bytes.

HMAC: each key version has its own 32-byte HMAC key;
``hmac`` returns ``vault:v<N>:<base64(HMAC-SHA2(hmac key, input))>``.

Guarantees: confidentiality and integrity of the plaintext. Every failure
of :func:`decrypt` (wrong key, other context, tampered or truncated bytes)
raises :class:`kustos.errors.DecryptionError` and nothing else.
Malformed ciphertext *text* (no ``vault:`` prefix, bad version, bad base64)
raises :class:`kustos.errors.InvalidRequestError` with Vault's messages: it
says nothing about keys. Limits: a random 96-bit nonce is safe for about
2**32 encryptions per key version; rotate long before that. Misuse: passing
``nonce`` is for test vectors only.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kustos.errors import DecryptionError, InvalidRequestError

__all__ = [
    "DEFAULT_KEY_TYPE",
    "HMAC_ALGORITHMS",
    "KDF",
    "KEY_SIZE",
    "KEY_TYPES",
    "NONCE_SIZE",
    "KeyMaterial",
    "decrypt",
    "derive_key",
    "encrypt",
    "format_ciphertext",
    "hmac_digest",
    "parse_ciphertext",
]

KEY_TYPES: Final = ("aes256-gcm96", "chacha20-poly1305")
DEFAULT_KEY_TYPE: Final = "aes256-gcm96"
KDF: Final = "hkdf_sha256"
KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
_TAG_SIZE: Final = 16
_PREFIX: Final = "vault:"
_MATERIAL_FORMAT: Final = 1
HMAC_ALGORITHMS: Final[dict[str, str]] = {
    "sha2-224": "sha224",
    "sha2-256": "sha256",
    "sha2-384": "sha384",
    "sha2-512": "sha512",
}
"""HMAC algorithms by Vault's names (``sha2-256`` is the default)."""

RandBytes = Callable[[int], bytes]


@dataclass(frozen=True, repr=False)
class KeyMaterial:
    """One key version's secrets: the encryption key and the HMAC key (never in repr)."""

    key: bytes = field(repr=False)
    hmac_key: bytes = field(repr=False)

    @classmethod
    def generate(cls, *, randbytes: RandBytes = secrets.token_bytes) -> KeyMaterial:
        key, hmac_key = randbytes(KEY_SIZE), randbytes(KEY_SIZE)
        if len(key) != KEY_SIZE or len(hmac_key) != KEY_SIZE:
            raise ValueError("randbytes returned the wrong number of bytes")
        return cls(key=key, hmac_key=hmac_key)

    def to_bytes(self) -> bytes:
        """Format byte ``0x01``, the key, the HMAC key (to be stored encrypted, never as is)."""
        return bytes([_MATERIAL_FORMAT]) + self.key + self.hmac_key

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyMaterial:
        if len(data) != 1 + 2 * KEY_SIZE or data[0] != _MATERIAL_FORMAT:
            raise DecryptionError()
        return cls(key=data[1 : 1 + KEY_SIZE], hmac_key=data[1 + KEY_SIZE :])

    def __repr__(self) -> str:
        return "KeyMaterial(<hidden>)"


def derive_key(key: bytes, context: bytes) -> bytes:
    """HKDF-SHA256(key, salt=None, info=context), 32 bytes (Vault's ``hkdf_sha256``)."""
    if not context:
        raise InvalidRequestError("missing 'context' for key derivation")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=context).derive(key)


def _cipher(key_type: str, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if key_type == "aes256-gcm96":
        return AESGCM(key)
    if key_type == "chacha20-poly1305":
        return ChaCha20Poly1305(key)
    raise InvalidRequestError(
        f"unsupported key type {key_type!r}; use one of {', '.join(KEY_TYPES)}"
    )


def encrypt(
    key_type: str,
    key: bytes,
    plaintext: bytes,
    *,
    randbytes: RandBytes = secrets.token_bytes,
) -> bytes:
    """``nonce || ciphertext || tag`` under ``key`` (no associated data, as Vault)."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes")
    nonce = randbytes(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise ValueError("randbytes returned the wrong number of bytes")
    return nonce + _cipher(key_type, key).encrypt(nonce, plaintext, None)


def decrypt(key_type: str, key: bytes, blob: bytes) -> bytes:
    """Verify and decrypt an :func:`encrypt` output; ``DecryptionError`` on any failure."""
    if len(key) != KEY_SIZE or len(blob) < NONCE_SIZE + _TAG_SIZE or key_type not in KEY_TYPES:
        raise DecryptionError()
    try:
        return _cipher(key_type, key).decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], None)
    except (InvalidTag, ValueError, TypeError, OverflowError):
        raise DecryptionError() from None


def format_ciphertext(version: int, blob: bytes) -> str:
    """``vault:v<version>:<base64(blob)>``."""
    return f"{_PREFIX}v{version}:{base64.b64encode(blob).decode('ascii')}"


def parse_ciphertext(text: str, *, what: str = "ciphertext") -> tuple[int, bytes]:
    """``(version, blob)`` from ``vault:v<N>:<base64>``; ``InvalidRequestError`` with Vault's wording."""
    if not isinstance(text, str) or not text.startswith(_PREFIX):
        raise InvalidRequestError(f"invalid {what}: no prefix")
    parts = text[len(_PREFIX) :].split(":", 1)
    if len(parts) != 2 or not parts[0].startswith("v"):
        raise InvalidRequestError(f"invalid {what}: wrong number of fields")
    digits = parts[0][1:]
    if not digits.isascii() or not digits.isdigit() or len(digits) > 9:
        raise InvalidRequestError(f"invalid {what}: version number could not be decoded")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"invalid {what}: could not decode base64") from None
    return max(int(digits), 1), blob  # v0 is Vault's legacy spelling of version 1


def hmac_digest(hmac_key: bytes, data: bytes, *, algorithm: str = "sha2-256") -> bytes:
    """HMAC of ``data`` with one of :data:`HMAC_ALGORITHMS`."""
    digest = HMAC_ALGORITHMS.get(algorithm)
    if digest is None:
        raise InvalidRequestError(
            f"unsupported algorithm {algorithm!r}; use one of {', '.join(HMAC_ALGORITHMS)}"
        )
    return hmac.new(hmac_key, data, digest).digest()
