"""What every KMS plugin backend provides: the current key id, wrap, unwrap, health.

A backend wraps small secrets (kube-apiserver's 32-byte DEK seeds) and says
which key it wraps with now (:attr:`BackendStatus.key_id`): when that id
changes, the API server makes a new seed and wraps it once. Unwrapping gets
the ``key_id`` and ``annotations`` that wrapping returned, so data wrapped
under an older key version keeps decrypting after a rotation.

Errors: a ciphertext that does not open raises
:class:`~kustos.errors.DecryptionError` (nothing else is revealed); a key id
this backend does not know raises :class:`~kustos.errors.NotFoundError`; a
backend that cannot be reached raises :class:`~kustos.errors.KeyProviderError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol, runtime_checkable

from kustos.crypto.envelope import context

__all__ = [
    "ANNOTATION_BACKEND",
    "ANNOTATION_FORMAT",
    "FORMAT",
    "BackendStatus",
    "KmsBackend",
    "Wrapped",
    "seed_aad",
]

ANNOTATION_FORMAT: Final = "format.kms.kustos.io"
"""Annotation naming the plugin's ciphertext format (annotation keys must be domain names)."""
ANNOTATION_BACKEND: Final = "backend.kms.kustos.io"
"""Annotation naming the backend that wrapped the seed."""
FORMAT: Final = b"1"


def seed_aad(key_id: str) -> bytes:
    """Associated data binding a wrapped seed to the plugin and to the key id it claims."""
    return context(b"kustos/kmsplugin/v2", key_id.encode("utf-8"))


@dataclass(frozen=True)
class Wrapped:
    """What ``Encrypt`` answers: the ciphertext, the key that made it, and annotations."""

    ciphertext: bytes = field(repr=False)
    key_id: str
    annotations: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class BackendStatus:
    """What ``Status`` answers: the current key id, and ``"ok"`` or why the backend is not."""

    key_id: str
    healthz: str = "ok"

    @property
    def healthy(self) -> bool:
        return self.healthz == "ok"


@runtime_checkable
class KmsBackend(Protocol):
    """A source of key-encryption keys for the KMS plugin."""

    @property
    def name(self) -> str:
        """``local``, ``pkcs11``, ``aws`` or ``transit``."""
        ...

    def status(self) -> BackendStatus:
        """Check the backend (may call it) and name the key that wraps now."""
        ...

    def encrypt(self, plaintext: bytes) -> Wrapped:
        """Wrap ``plaintext`` with the current key."""
        ...

    def decrypt(self, ciphertext: bytes, *, key_id: str, annotations: Mapping[str, bytes]) -> bytes:
        """Unwrap what :meth:`encrypt` returned (under this or an older key)."""
        ...

    def close(self) -> None:
        """Release connections and forget key material."""
        ...
