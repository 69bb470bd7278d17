"""The one table that maps Kustos errors to HTTP statuses, and Vault's error body.

Every handler raises errors from :mod:`kustos.errors` (or the two HTTP-only
ones below); the dispatcher turns them into ``{"errors": [...]}`` with the
status from :data:`STATUS_BY_ERROR`, looked up along the class's MRO so a
subclass inherits its parent's status unless it has its own row. Errors whose
message could reveal stored data (decryption, storage, key provider, anything
unexpected) are answered with a fixed, generic message; the details go to the
log under the request id.
"""

from __future__ import annotations

from typing import Final

import orjson

from kustos.errors import (
    CheckAndSetError,
    ConfigError,
    DecryptionError,
    InvalidRequestError,
    KeyProviderError,
    KustosError,
    NotFoundError,
    PermissionDeniedError,
    SealedError,
    StorageError,
    UnsupportedOperationError,
)

__all__ = [
    "GENERIC_MESSAGES",
    "STATUS_BY_ERROR",
    "RequestTooLargeError",
    "UnsupportedMediaTypeError",
    "error_body",
    "public_message",
    "status_for",
]


class RequestTooLargeError(InvalidRequestError):
    """The request body (or the secret in it) is larger than the configured maximum (413)."""


class UnsupportedMediaTypeError(InvalidRequestError):
    """PATCH without ``Content-Type: application/merge-patch+json`` (415, like Vault)."""


STATUS_BY_ERROR: Final[dict[type[BaseException], int]] = {
    RequestTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    CheckAndSetError: 400,
    InvalidRequestError: 400,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    UnsupportedOperationError: 405,
    SealedError: 503,
    DecryptionError: 500,
    StorageError: 500,
    KeyProviderError: 500,
    ConfigError: 500,
    KustosError: 500,
}
"""HTTP status per error class; anything not listed (not a KustosError) is a 500."""

GENERIC_MESSAGES: Final[dict[type[BaseException], str]] = {
    DecryptionError: "integrity check failed: a stored record could not be decrypted or verified",
    StorageError: "internal error: the storage backend failed",
    KeyProviderError: "internal error: the key provider failed",
    ConfigError: "internal error: the server configuration is invalid",
}
"""Fixed messages for errors whose own text must not reach the caller."""

_INTERNAL: Final = "internal error"


def status_for(exc: BaseException) -> int:
    """The HTTP status for ``exc`` (first match along its MRO; 500 if none)."""
    for cls in type(exc).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500


def public_message(exc: BaseException) -> str | None:
    """What the caller may read about ``exc``; ``None`` means "no message" (Vault's bare 404)."""
    for cls in type(exc).__mro__:
        generic = GENERIC_MESSAGES.get(cls)
        if generic is not None:
            return generic
        if cls in STATUS_BY_ERROR:
            text = str(exc)
            return text or None
    return _INTERNAL


def error_body(*messages: str) -> bytes:
    """Vault's error document: ``{"errors": [...]}`` (an empty list is valid: bare 404)."""
    return orjson.dumps({"errors": list(messages)})
