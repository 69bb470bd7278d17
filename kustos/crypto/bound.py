"""Values only one Kubernetes ServiceAccount can open (Kamus's model, bound by the cryptography).

A *bound value* is encrypted by the server for one ServiceAccount
(``namespace/name``, optionally pinned to the account's UID) under a key the
server holds and nobody else sees. The text form names the account in clear,
so tools can tell whom a value is for, and carries everything else needed to
open it::

    kustos:bound:v1:<key version>:<namespace>/<name>[/<uid>]:<base64(nonce || ciphertext || tag)>

Recipe (all of it here; the server only stores the root keys):

* the *root key* of a key version is 32 random bytes (:func:`generate_root_key`);
* the key for one account is HKDF-SHA256(root key, salt = ``b"kustos/bound/v1"``,
  info = ``b"kustos/bound/v1\\x00" + binding``), 32 bytes, where ``binding`` is
  ``<namespace>/<name>`` or ``<namespace>/<name>/<uid>``;
* the value is AES-256-GCM (:mod:`kustos.crypto.aead`) under that key with
  associated data = the header ``kustos:bound:v1:<key version>:<binding>``.

:func:`open_value` derives the key from the *opener's* identity (what the
server learned when that token logged in), never from the header: a value
for ``payments/api`` opened as ``payments/web`` uses another key and other
associated data, and fails. A value bound to a UID opens only for a login
that carries that UID, so a ServiceAccount deleted and recreated (new UID)
cannot open what was sealed for the old one.

Guarantees: confidentiality and integrity of the value; the binding, the key
version and the format are authenticated. Every failure to open (other
account, other UID, wrong key, tampered or truncated bytes) raises
:class:`kustos.errors.DecryptionError` and nothing else; malformed *text*
raises :class:`kustos.errors.InvalidRequestError` naming what is wrong.
Limits: whoever holds a root key (the server, after unsealing) can derive
every account's key; the binding says who may *ask* the server, it is not
end-to-end encryption to the pod. A random 96-bit nonce is safe for about
2**32 values per account and key version. Misuse: passing ``nonce`` is for
test vectors only.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kustos.crypto import aead
from kustos.errors import DecryptionError, InvalidRequestError

__all__ = [
    "PREFIX",
    "ROOT_KEY_SIZE",
    "BoundIdentity",
    "BoundValue",
    "derive_key",
    "generate_root_key",
    "is_bound",
    "open_value",
    "parse",
    "seal_value",
]

PREFIX: Final = "kustos:bound:v1:"
"""Every bound value starts with this."""
ROOT_KEY_SIZE: Final = 32
_SALT: Final = b"kustos/bound/v1"
_INFO: Final = b"kustos/bound/v1\x00"
_NAMESPACE: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_UID: Final = re.compile(r"[A-Za-z0-9-]{1,64}")
_MAX_VERSION: Final = 10**9


@dataclass(frozen=True, slots=True)
class BoundIdentity:
    """A ServiceAccount as a binding: namespace, name and (when pinned) its UID."""

    namespace: str
    name: str
    uid: str = ""

    def __post_init__(self) -> None:
        if not _NAMESPACE.fullmatch(self.namespace):
            raise InvalidRequestError(
                f"invalid namespace {self.namespace[:80]!r}: lowercase letters, digits, '-' (at most 63)"
            )
        if not _NAME.fullmatch(self.name):
            raise InvalidRequestError(
                f"invalid service account name {self.name[:80]!r}: lowercase letters, digits, '-', '.'"
            )
        if self.uid and not _UID.fullmatch(self.uid):
            raise InvalidRequestError(f"invalid service account uid {self.uid[:80]!r}")

    @property
    def binding(self) -> str:
        """``namespace/name`` or ``namespace/name/uid``."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}/{self.uid}" if self.uid else base

    @property
    def account(self) -> str:
        """``namespace/name`` (without the UID)."""
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_binding(cls, text: str) -> BoundIdentity:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidRequestError(
                "invalid bound value: the binding must be namespace/name or namespace/name/uid"
            )
        return cls(namespace=parts[0], name=parts[1], uid=parts[2] if len(parts) == 3 else "")


@dataclass(frozen=True, slots=True)
class BoundValue:
    """A parsed bound value: key version, whom it is for, and the sealed bytes."""

    version: int
    identity: BoundIdentity
    blob: bytes

    @property
    def header(self) -> str:
        """``kustos:bound:v1:<version>:<binding>`` (the associated data)."""
        return f"{PREFIX}{self.version}:{self.identity.binding}"

    def text(self) -> str:
        return f"{self.header}:{base64.b64encode(self.blob).decode('ascii')}"


def generate_root_key(*, randbytes: Callable[[int], bytes] = secrets.token_bytes) -> bytes:
    """A fresh 256-bit root key for one key version."""
    key = randbytes(ROOT_KEY_SIZE)
    if len(key) != ROOT_KEY_SIZE:
        raise ValueError("randbytes returned the wrong number of bytes")
    return key


def derive_key(root_key: bytes, identity: BoundIdentity) -> bytes:
    """The AES-256 key of one binding under one root key (HKDF-SHA256)."""
    if len(root_key) != ROOT_KEY_SIZE:
        raise ValueError(f"root key must be {ROOT_KEY_SIZE} bytes")
    return HKDF(
        algorithm=hashes.SHA256(),
        length=aead.KEY_SIZE,
        salt=_SALT,
        info=_INFO + identity.binding.encode("ascii"),
    ).derive(root_key)


def is_bound(value: object) -> bool:
    """Whether ``value`` looks like a bound value (text starting with :data:`PREFIX`)."""
    if isinstance(value, bytes):
        return value.startswith(PREFIX.encode("ascii"))
    return isinstance(value, str) and value.startswith(PREFIX)


def parse(text: str) -> BoundValue:
    """Split a bound value's text; ``InvalidRequestError`` naming what is malformed."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise InvalidRequestError(f"not a bound value: it must start with {PREFIX!r}")
    parts = text.strip()[len(PREFIX) :].split(":")
    if len(parts) != 3:
        raise InvalidRequestError(
            "invalid bound value: expected <key version>:<namespace>/<name>[/<uid>]:<base64>"
        )
    digits, binding, payload = parts
    if not digits.isascii() or not digits.isdigit() or not 0 < int(digits) < _MAX_VERSION:
        raise InvalidRequestError("invalid bound value: the key version is not a positive number")
    identity = BoundIdentity.from_binding(binding)
    try:
        blob = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError("invalid bound value: the payload is not base64") from None
    if len(blob) < aead.OVERHEAD:
        raise InvalidRequestError("invalid bound value: the payload is too short")
    return BoundValue(version=int(digits), identity=identity, blob=blob)


def seal_value(
    root_key: bytes,
    plaintext: bytes,
    *,
    version: int,
    identity: BoundIdentity,
    nonce: bytes | None = None,
) -> str:
    """Encrypt ``plaintext`` for ``identity`` under key ``version``; the text form."""
    if not 0 < version < _MAX_VERSION:
        raise ValueError("version must be a positive number")
    header = f"{PREFIX}{version}:{identity.binding}"
    blob = aead.seal(
        derive_key(root_key, identity), plaintext, aad=header.encode("ascii"), nonce=nonce
    )
    return BoundValue(version=version, identity=identity, blob=blob).text()


def open_value(
    root_keys: Mapping[int, bytes], value: BoundValue, *, opener: BoundIdentity
) -> bytes:
    """Open ``value`` as ``opener`` (the identity of the caller's login), with the key version it names.

    The key and associated data come from ``opener``: when the value is
    bound to a UID the opener's UID is used, else only its namespace and
    name. Any mismatch, unknown key version or tampering raises
    :class:`DecryptionError`.
    """
    root_key = root_keys.get(value.version)
    if root_key is None:
        raise DecryptionError()
    as_bound = BoundIdentity(
        namespace=opener.namespace,
        name=opener.name,
        uid=opener.uid if value.identity.uid else "",
    )
    if value.identity.uid and not opener.uid:
        raise DecryptionError()
    header = f"{PREFIX}{value.version}:{as_bound.binding}"
    return aead.unseal(derive_key(root_key, as_bound), value.blob, aad=header.encode("ascii"))
