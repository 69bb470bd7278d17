"""The value cipher and MAC of the sops 3.x file format (getsops/sops ``aes/cipher.go``, ``sops.go``).

Every encrypted leaf of a sops file is one string::

    ENC[AES256_GCM,data:<b64 ciphertext>,iv:<b64 32-byte IV>,tag:<b64 16-byte tag>,type:<type>]

encrypted with the file's 32-byte data key under AES-256-GCM with a
**32-byte** IV, and with associated data = the map keys of the leaf's path
joined by ``:`` plus a trailing ``:`` (list indices are not part of it), so a
ciphertext moved to another key fails to decrypt. ``type`` is one of ``str``,
``int``, ``float``, ``bool``, ``time``, ``comment``, ``bytes``.

The file MAC is SHA-512 over the plaintext bytes of every leaf in document
order (:class:`MacHasher`), printed as uppercase hex and stored as an
``ENC[...]`` ``str`` value whose associated data is the ``lastmodified``
timestamp.

Guarantees: :meth:`ValueCipher.decrypt` fails with
:class:`kustos.errors.DecryptionError` for every cause (wrong key, wrong path,
flipped byte, malformed value) and the message never contains plaintext.
Diff-friendliness: a :class:`ValueCipher` remembers the IV of each value it
decrypted and reuses it when the *same plaintext, type and path* is encrypted
again (as sops does), so unchanged values keep byte-identical ciphertext.

Limits and misuse: IV reuse is only safe because it is restricted to identical
plaintext and associated data under one key (the ciphertext is then identical
too, so nothing new leaks); never feed the stash values from another key.
This is the only module of the encrypted-files feature that imports
``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import os
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kustos.errors import DecryptionError

__all__ = [
    "DATA_KEY_SIZE",
    "IV_SIZE",
    "MAC_ONLY_ENCRYPTED_INIT",
    "VALUE_TYPES",
    "MacHasher",
    "ValueCipher",
    "format_float",
    "generate_data_key",
    "is_encrypted_value",
]

DATA_KEY_SIZE: Final = 32
IV_SIZE: Final = 32
_TAG_SIZE: Final = 16
VALUE_TYPES: Final = frozenset({"str", "int", "float", "bool", "time", "comment", "bytes"})
#: sha256(b"sops"): fed first into the MAC when ``mac_only_encrypted`` is set.
MAC_ONLY_ENCRYPTED_INIT: Final = hashlib.sha256(b"sops").digest()

_ENC_RE: Final = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]")


def is_encrypted_value(value: object) -> bool:
    """True if ``value`` is a string in the ``ENC[AES256_GCM,...]`` format."""
    return (
        isinstance(value, str) and value.startswith("ENC[AES256_GCM,data:") and value.endswith("]")
    )


def generate_data_key(*, randbytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """A fresh random 32-byte data key for one file."""
    return randbytes(DATA_KEY_SIZE)


def format_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest round-trip digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


class MacHasher:
    """Accumulates the sops MAC: SHA-512 over leaf plaintexts in document order."""

    __slots__ = ("_hash",)

    def __init__(self, *, mac_only_encrypted: bool = False) -> None:
        self._hash = hashlib.sha512()
        if mac_only_encrypted:
            self._hash.update(MAC_ONLY_ENCRYPTED_INIT)

    def update(self, data: bytes) -> None:
        """Feed one leaf's plaintext bytes."""
        self._hash.update(data)

    def hexdigest(self) -> str:
        """The MAC as sops prints it: uppercase hex."""
        return self._hash.hexdigest().upper()


class ValueCipher:
    """Encrypts and decrypts sops values under one data key, reusing IVs for unchanged values.

    One object per file: the AES-GCM object is built once and the IV stash
    lives as long as the object (decrypt, edit, encrypt again).
    """

    __slots__ = ("_aead", "_randbytes", "_stash")

    def __init__(self, data_key: bytes, *, randbytes: Callable[[int], bytes] = os.urandom) -> None:
        if len(data_key) != DATA_KEY_SIZE:
            raise DecryptionError("data key has the wrong size")
        self._aead = AESGCM(data_key)
        self._randbytes = randbytes
        self._stash: dict[tuple[str, str, bytes], bytes] = {}

    def encrypt(self, plaintext: bytes, *, aad: str, value_type: str) -> str:
        """Encrypt one leaf; ``value_type`` is stored as-is (``str``, ``int``, ...)."""
        if value_type not in VALUE_TYPES:
            raise ValueError(f"unknown sops value type {value_type!r}")
        iv = self._stash.get((aad, value_type, plaintext))
        if iv is None:
            iv = self._randbytes(IV_SIZE)
        sealed = self._aead.encrypt(iv, plaintext, aad.encode())
        b64 = base64.b64encode
        return (
            f"ENC[AES256_GCM,data:{b64(sealed[:-_TAG_SIZE]).decode()},iv:{b64(iv).decode()},"
            f"tag:{b64(sealed[-_TAG_SIZE:]).decode()},type:{value_type}]"
        )

    def decrypt(self, value: str, *, aad: str) -> tuple[bytes, str]:
        """Decrypt one ``ENC[...]`` value; returns ``(plaintext bytes, type)``.

        Raises :class:`DecryptionError` if the value is malformed, was
        tampered with, belongs to another path or another data key.
        """
        match = _ENC_RE.match(value)
        if match is None:
            raise DecryptionError("value is not in the sops ENC[AES256_GCM,...] format")
        try:
            data = binascii.a2b_base64(match.group(1), strict_mode=True)
            iv = binascii.a2b_base64(match.group(2), strict_mode=True)
            tag = binascii.a2b_base64(match.group(3), strict_mode=True)
        except (binascii.Error, ValueError):
            raise DecryptionError("value has invalid base64 in the sops ENC[...] format") from None
        value_type = match.group(4)
        if value_type not in VALUE_TYPES or len(tag) != _TAG_SIZE or not 8 <= len(iv) <= 128:
            raise DecryptionError(
                "value has an invalid type, IV or tag in the sops ENC[...] format"
            )
        try:
            plaintext = self._aead.decrypt(iv, data + tag, aad.encode())
        except InvalidTag:
            raise DecryptionError() from None
        self._stash[(aad, value_type, plaintext)] = iv
        return plaintext, value_type
