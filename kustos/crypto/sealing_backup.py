"""Passphrase encryption of a sealing-key backup bundle.

A backup of the sealing keys must be openable years later with nothing but a
passphrase (and no Kustos server), so it uses standard, boring parts:

* key derivation: scrypt (N=2**15, r=8, p=1, 16-byte random salt) → 32 bytes;
* encryption: AES-256-GCM, random 12-byte nonce, associated data
  ``b"kustos/sealing-key-backup/v1"``.

The bundle document (JSON, see :mod:`kustos.gitops.sealing.backups`) stores
``salt``, ``nonce`` and ``ciphertext`` (which ends with the 16-byte tag) in
base64. Any failure to open (wrong passphrase, flipped byte) raises
:class:`kustos.errors.DecryptionError`. Limits: strength is that of the
passphrase; scrypt makes each guess cost ~32 MiB of memory and ~0.1 s.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from kustos.errors import DecryptionError, InvalidRequestError
from kustos.sensitive import Sensitive

__all__ = [
    "BACKUP_AAD",
    "SCRYPT_N",
    "PassphraseBox",
    "open_with_passphrase",
    "seal_with_passphrase",
]

BACKUP_AAD: Final = b"kustos/sealing-key-backup/v1"
SCRYPT_N: Final = 2**15
_SCRYPT_R: Final = 8
_SCRYPT_P: Final = 1
_SALT_SIZE: Final = 16
_NONCE_SIZE: Final = 12


@dataclass(frozen=True)
class PassphraseBox:
    """The stored parts of a passphrase-encrypted payload."""

    salt: bytes
    nonce: bytes
    ciphertext: bytes
    n: int = SCRYPT_N


def _derive(passphrase: Sensitive[str], salt: bytes, n: int) -> bytes:
    if n < 2**14 or n > 2**20 or n & (n - 1):
        raise DecryptionError()
    return Scrypt(salt=salt, length=32, n=n, r=_SCRYPT_R, p=_SCRYPT_P).derive(
        passphrase.reveal().encode()
    )


def seal_with_passphrase(
    plaintext: Sensitive[bytes], *, passphrase: Sensitive[str]
) -> PassphraseBox:
    """Encrypt ``plaintext`` under a key derived from ``passphrase``."""
    if len(passphrase.reveal()) < 8:
        raise InvalidRequestError("backup passphrase must have at least 8 characters")
    salt = secrets.token_bytes(_SALT_SIZE)
    nonce = secrets.token_bytes(_NONCE_SIZE)
    key = _derive(passphrase, salt, SCRYPT_N)
    return PassphraseBox(
        salt=salt,
        nonce=nonce,
        ciphertext=AESGCM(key).encrypt(nonce, plaintext.reveal(), BACKUP_AAD),
    )


def open_with_passphrase(box: PassphraseBox, *, passphrase: Sensitive[str]) -> Sensitive[bytes]:
    """Decrypt a :class:`PassphraseBox`; any failure raises :class:`DecryptionError`."""
    if len(box.salt) != _SALT_SIZE or len(box.nonce) != _NONCE_SIZE:
        raise DecryptionError()
    key = _derive(passphrase, box.salt, box.n)
    try:
        return Sensitive(AESGCM(key).decrypt(box.nonce, box.ciphertext, BACKUP_AAD))
    except (InvalidTag, ValueError):
        raise DecryptionError() from None
