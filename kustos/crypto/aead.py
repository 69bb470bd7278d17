"""The one authenticated-encryption recipe every other Kustos format is built on.

AES-256-GCM with a 96-bit nonce and a 128-bit tag, as one byte string::

    nonce (12 bytes) || ciphertext (len(plaintext) bytes) || tag (16 bytes)

Guarantees: confidentiality and integrity of the plaintext, integrity of the
associated data ``aad`` (which is authenticated, not stored: the caller must
supply the same ``aad`` to :func:`unseal`). Every failure of :func:`unseal`
(wrong key, wrong ``aad``, a flipped or missing byte, a key of the wrong size)
raises :class:`kustos.errors.DecryptionError` with the same message.

Limits and misuse: a random nonce is safe for about 2**32 messages under one
key; Kustos uses fresh keys per secret version (see
:mod:`kustos.crypto.envelope`), so this bound is never approached. Passing an
explicit ``nonce`` is for test vectors only: reusing a nonce with one key
destroys both confidentiality and integrity.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kustos.errors import DecryptionError

__all__ = [
    "KEY_SIZE",
    "NONCE_SIZE",
    "OVERHEAD",
    "TAG_SIZE",
    "generate_key",
    "key_id",
    "seal",
    "unseal",
]

KEY_SIZE: Final = 32
"""Bytes in an AES-256 key."""
NONCE_SIZE: Final = 12
"""Bytes in a GCM nonce."""
TAG_SIZE: Final = 16
"""Bytes in a GCM authentication tag."""
OVERHEAD: Final = NONCE_SIZE + TAG_SIZE
"""How many bytes :func:`seal` adds to the plaintext."""


def generate_key(*, randbytes: Callable[[int], bytes] = secrets.token_bytes) -> bytes:
    """Return a fresh random 256-bit key."""
    key = randbytes(KEY_SIZE)
    if len(key) != KEY_SIZE:
        raise ValueError("randbytes returned the wrong number of bytes")
    return key


def key_id(key: bytes) -> str:
    """A public name for ``key``: 32 hex digits of BLAKE2b keyed with it over a fixed label.

    Stable for one key, different for another; safe to log, store and send
    (it is a MAC of a constant: it reveals nothing that helps recover the key).
    Used where a protocol needs to say which key encrypted something (the KMS
    plugin's ``key_id``).
    """
    if len(key) != KEY_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes")
    return hashlib.blake2b(b"kustos/key-id", key=key, digest_size=16).hexdigest()


def seal(key: bytes, plaintext: bytes, *, aad: bytes, nonce: bytes | None = None) -> bytes:
    """Encrypt and authenticate ``plaintext`` (and ``aad``) under ``key``.

    Returns ``nonce || ciphertext || tag``. ``nonce`` defaults to 12 random
    bytes; pass one only to reproduce a test vector.
    """
    if len(key) != KEY_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes")
    if nonce is None:
        nonce = secrets.token_bytes(NONCE_SIZE)
    elif len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, blob: bytes, *, aad: bytes) -> bytes:
    """Verify and decrypt a :func:`seal` output; raise ``DecryptionError`` on any failure."""
    if len(key) != KEY_SIZE or len(blob) < OVERHEAD:
        raise DecryptionError()
    try:
        return AESGCM(key).decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], aad)
    except (InvalidTag, ValueError, TypeError, OverflowError):
        raise DecryptionError() from None
