"""The ``KeyProvider`` protocol every key provider implements.

A provider protects one small secret: the serialized keyring of the server.
It is called at start (unwrap) and when the keyring changes (wrap), never per
request, so an HSM round trip is affordable.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["KeyProvider"]


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps the server's keyring.

    ``aad`` binds the wrapped blob to its purpose (for example
    ``b"kustos/keyring"``); unwrapping with other ``aad`` must fail.
    Every unwrap failure raises :class:`kustos.errors.DecryptionError`;
    provider outages raise :class:`kustos.errors.KeyProviderError`; a provider
    that has no key in memory yet raises :class:`kustos.errors.SealedError`.
    """

    @property
    def name(self) -> str:
        """Short provider name: ``local``, ``shamir``, ``pkcs11``."""
        ...

    @property
    def sealed(self) -> bool:
        """True while the provider cannot wrap or unwrap (shares missing)."""
        ...

    def wrap(self, plaintext: bytes, *, aad: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext``; the result is safe to store."""
        ...

    def unwrap(self, blob: bytes, *, aad: bytes) -> bytes:
        """Reverse :meth:`wrap`; raise ``DecryptionError`` on any mismatch."""
        ...

    def close(self) -> None:
        """Release handles (HSM sessions) and forget key material."""
        ...
