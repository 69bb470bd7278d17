"""Encrypted backups of the sealing keyring, openable without any Kustos server.

Sealed Secrets users back up their keys with ``kubectl get secret -o yaml``
(plaintext, and racing the 30-day renewal). A Kustos backup bundle holds the
whole keyring (every key, old ones included) and is always encrypted, in one
of two ways:

**age** (recommended): the bundle *is* an ASCII-armored age file
(``-----BEGIN AGE ENCRYPTED FILE-----``) of :meth:`SealingKeyring.to_bytes`,
encrypted to one or more X25519 recipients (``age1...``). It opens with the
stock tool too: ``age -d -i key.txt bundle.age > keyring.json``.

**passphrase**: a JSON document::

    {"kind": "SealingKeyBackup", "apiVersion": "kustos.io/v1",
     "encryption": "scrypt-aes-256-gcm", "scrypt": {"n": 32768, "r": 8, "p": 1},
     "salt": b64, "nonce": b64, "ciphertext": b64,
     "keys": [{"keyId": ..., "createdAt": ...}]}   # public listing only

(:mod:`kustos.crypto.sealing_backup` documents the cryptography.)

:func:`read_backup` detects which kind it is given. A wrong passphrase or
identity raises :class:`kustos.errors.DecryptionError`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any, Final

import pyrage

from kustos.crypto.sealing_backup import PassphraseBox, open_with_passphrase, seal_with_passphrase
from kustos.errors import DecryptionError, InvalidRequestError
from kustos.gitops.sealing.keyrings import SealingKeyring
from kustos.sensitive import Sensitive

__all__ = ["AGE_ARMOR_HEADER", "BACKUP_KIND", "is_backup", "read_backup", "write_backup"]

AGE_ARMOR_HEADER: Final = b"-----BEGIN AGE ENCRYPTED FILE-----"
_AGE_BINARY_HEADER: Final = b"age-encryption.org/v1"
BACKUP_KIND: Final = "SealingKeyBackup"
_ENCRYPTION: Final = "scrypt-aes-256-gcm"


def _age_recipients(recipients: Sequence[str]) -> list[Any]:
    out = []
    for text in recipients:
        try:
            out.append(pyrage.x25519.Recipient.from_str(text.strip()))
        except Exception:
            raise InvalidRequestError(
                f"not an age X25519 recipient: {text.strip()[:12]}... (expected age1...)"
            ) from None
    return out


def _age_identities(identity_files: Sequence[bytes]) -> list[Any]:
    out = []
    for data in identity_files:
        for line in data.decode(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("AGE-SECRET-KEY-"):
                try:
                    out.append(pyrage.x25519.Identity.from_str(line))
                except Exception:
                    raise InvalidRequestError(
                        "age identity file holds an invalid AGE-SECRET-KEY line"
                    ) from None
    if not out:
        raise InvalidRequestError(
            "no age identity (AGE-SECRET-KEY-...) given to open an age backup"
        )
    return out


def write_backup(
    keyring: SealingKeyring,
    *,
    passphrase: Sensitive[str] | None = None,
    age_recipients: Sequence[str] = (),
) -> bytes:
    """Encrypt ``keyring`` into a bundle: age when recipients are given, else the passphrase."""
    if not len(keyring):
        raise InvalidRequestError("the sealing keyring is empty: nothing to back up")
    plaintext = keyring.to_bytes()
    if age_recipients:
        if passphrase is not None:
            raise InvalidRequestError(
                "give either age recipients or a passphrase for a backup, not both"
            )
        return bytes(
            pyrage.encrypt(plaintext.reveal(), _age_recipients(age_recipients), armored=True)
        )
    if passphrase is None:
        raise InvalidRequestError("a backup needs a passphrase or at least one age recipient")
    box = seal_with_passphrase(plaintext, passphrase=passphrase)
    doc = {
        "apiVersion": "kustos.io/v1",
        "kind": BACKUP_KIND,
        "encryption": _ENCRYPTION,
        "scrypt": {"n": box.n, "r": 8, "p": 1},
        "salt": base64.b64encode(box.salt).decode(),
        "nonce": base64.b64encode(box.nonce).decode(),
        "ciphertext": base64.b64encode(box.ciphertext).decode(),
        "keys": [
            {"keyId": e.key_id, "createdAt": e.created_at.isoformat()} for e in keyring.entries
        ],
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def is_backup(data: bytes) -> bool:
    """True when ``data`` looks like a bundle :func:`write_backup` made."""
    head = data.lstrip()[:64]
    if head.startswith((AGE_ARMOR_HEADER, _AGE_BINARY_HEADER)):
        return True
    if head.startswith(b"{"):
        try:
            return bool(json.loads(data).get("kind") == BACKUP_KIND)
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return False
    return False


def read_backup(
    data: bytes,
    *,
    passphrase: Sensitive[str] | None = None,
    age_identities: Sequence[bytes] = (),
) -> SealingKeyring:
    """Open a bundle; ``age_identities`` are the contents of age identity files."""
    head = data.lstrip()[:64]
    if head.startswith((AGE_ARMOR_HEADER, _AGE_BINARY_HEADER)):
        identities = _age_identities(age_identities)
        try:
            plaintext = bytes(
                pyrage.decrypt(
                    data.strip() + b"\n" if head.startswith(AGE_ARMOR_HEADER) else data, identities
                )
            )
        except Exception:
            raise DecryptionError(
                "cannot open the age key backup: no given identity opens it, or it is corrupted"
            ) from None
        return SealingKeyring.from_bytes(Sensitive(plaintext))
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequestError(
            "not a key backup bundle (neither age nor a SealingKeyBackup document)"
        ) from None
    if (
        not isinstance(doc, dict)
        or doc.get("kind") != BACKUP_KIND
        or doc.get("encryption") != _ENCRYPTION
    ):
        raise InvalidRequestError(
            f"not a key backup bundle (expected kind {BACKUP_KIND}, encryption {_ENCRYPTION})"
        )
    if passphrase is None:
        raise InvalidRequestError("this key backup is passphrase-encrypted: give the passphrase")
    try:
        box = PassphraseBox(
            salt=base64.b64decode(doc["salt"], validate=True),
            nonce=base64.b64decode(doc["nonce"], validate=True),
            ciphertext=base64.b64decode(doc["ciphertext"], validate=True),
            n=int(doc.get("scrypt", {}).get("n", 0)),
        )
    except (KeyError, TypeError, ValueError, binascii.Error, AttributeError):
        raise DecryptionError("cannot open the key backup: it is corrupted") from None
    try:
        opened = open_with_passphrase(box, passphrase=passphrase)
    except DecryptionError:
        raise DecryptionError(
            "cannot open the key backup: wrong passphrase, or it is corrupted"
        ) from None
    return SealingKeyring.from_bytes(opened)
