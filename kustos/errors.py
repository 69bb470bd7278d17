"""The exception tree of Kustos, shared by every layer.

Every error Kustos raises on purpose derives from :class:`KustosError`. The
server maps each branch to one HTTP status (see ``kustos.server.errors``), the
CLI to a message and a non-zero exit, so the classes say *what happened*, not
*where*::

    KustosError
    ├── DecryptionError          any failure to decrypt or verify (reveals nothing else)
    ├── ConfigError              invalid settings or files given by the operator
    ├── InvalidRequestError      bad input from a caller                   → 400
    │   └── CheckAndSetError     cas did not match the current version     → 400
    ├── PermissionDeniedError    missing token, or no capability            → 403
    │   └── InvalidTokenError    the token is unknown, expired or revoked  → 403
    ├── NotFoundError            nothing at that path                      → 404
    ├── UnsupportedOperationError  method not allowed at that path         → 405
    ├── SealedError              the server is sealed                      → 503
    ├── StorageError             the storage backend failed                → 500
    └── KeyProviderError         the key provider (file, HSM, KMS) failed  → 500

Messages never contain secret values: callers build them from names and paths.
"""

from __future__ import annotations

__all__ = [
    "CheckAndSetError",
    "ConfigError",
    "DecryptionError",
    "InvalidRequestError",
    "InvalidTokenError",
    "KeyProviderError",
    "KustosError",
    "NotFoundError",
    "PermissionDeniedError",
    "SealedError",
    "StorageError",
    "UnsupportedOperationError",
]


class KustosError(Exception):
    """Base of every error Kustos raises on purpose."""


class DecryptionError(KustosError):
    """A ciphertext could not be decrypted or verified.

    Raised for every cause (wrong key, tampered bytes, wrong associated data,
    truncated input, unknown format version) with the same message, so that
    the error reveals nothing about which check failed.
    """

    def __init__(
        self, message: str = "decryption failed: ciphertext is invalid or was tampered with"
    ) -> None:
        super().__init__(message)


class ConfigError(KustosError):
    """Settings, a key file or a configuration document is invalid."""


class InvalidRequestError(KustosError):
    """A caller sent something malformed or not allowed; nothing was changed."""


class CheckAndSetError(InvalidRequestError):
    """A check-and-set write named a version that is not the current one."""


class PermissionDeniedError(KustosError):
    """The caller is not authenticated, or its policies do not grant the capability."""


class InvalidTokenError(PermissionDeniedError):
    """The token presented is unknown, expired or revoked (not a policy decision).

    The status stays Vault's 403; the message differs from a policy deny so
    that a person knows to log in again rather than to ask for a policy.
    """

    MESSAGE = "permission denied: invalid token (unknown, expired or revoked)"

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)


class NotFoundError(KustosError):
    """Nothing exists at the requested path."""


class UnsupportedOperationError(KustosError):
    """The path exists but does not support this operation."""


class SealedError(KustosError):
    """The server is sealed: its keys are not in memory yet."""

    def __init__(self, message: str = "Vault is sealed") -> None:
        super().__init__(message)


class StorageError(KustosError):
    """The storage backend failed (I/O, connection, constraint)."""


class KeyProviderError(KustosError):
    """The key provider (key file, Shamir shares, HSM, KMS) failed."""
