"""How an HTTP answer from a Vault-compatible server becomes a Kustos exception.

This is the one boundary between HTTP status codes and ``kustos.errors`` on the
client side (the server keeps the reverse table in ``kustos.server``). Every
method of :class:`kustos.client.KustosClient` raises through
:func:`error_from_response`, so callers catch the same exception tree that the
rest of Kustos uses. The server's ``{"errors": [...]}`` list is joined into the
message; it never carries secret values (the server builds it from names).

A server that cannot be reached at all raises :class:`ServerUnreachableError`,
which names the address so the CLI can say where it looked.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from kustos.errors import (
    CheckAndSetError,
    InvalidRequestError,
    InvalidTokenError,
    KustosError,
    NotFoundError,
    PermissionDeniedError,
    SealedError,
    UnsupportedOperationError,
)

__all__ = ["STATUS_ERRORS", "ServerUnreachableError", "error_from_response", "error_messages"]

STATUS_ERRORS: Final[Mapping[int, type[KustosError]]] = MappingProxyType(
    {
        400: InvalidRequestError,
        401: PermissionDeniedError,
        403: PermissionDeniedError,
        404: NotFoundError,
        405: UnsupportedOperationError,
        409: CheckAndSetError,
        412: CheckAndSetError,
        500: KustosError,
        502: KustosError,
        503: SealedError,
    }
)
"""HTTP status -> exception class. Any other 4xx is an ``InvalidRequestError``, any other 5xx a ``KustosError``."""

_CAS_MARKER: Final = "check-and-set"
_INVALID_TOKEN_MARKERS: Final = ("invalid token", "bad token")


class ServerUnreachableError(KustosError):
    """No HTTP answer at all: connection refused, DNS failure, TLS failure or timeout."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot reach the Kustos server at {address}: {reason}")
        self.address = address
        self.reason = reason


def error_messages(body: Any) -> list[str]:
    """The ``errors`` list of a Vault-style error body, as strings (empty if absent)."""
    if isinstance(body, Mapping):
        errors = body.get("errors")
        if isinstance(errors, list):
            return [str(e) for e in errors if str(e)]
    return []


def error_from_response(*, status: int, body: Any, method: str, path: str) -> KustosError:
    """Build the exception for a non-2xx answer to ``method path``.

    The message is the server's ``errors`` joined with ``"; "``; when the
    server sent none (Vault answers a missing secret with ``{"errors": []}``),
    it says which request got which status. A 400 whose message is about
    check-and-set becomes a :class:`~kustos.errors.CheckAndSetError`, as Vault
    reports a ``cas`` mismatch with a plain 400; a 403 that says the token is
    invalid (Kustos, or Vault's "bad token") becomes an
    :class:`~kustos.errors.InvalidTokenError`, a policy deny stays a
    :class:`~kustos.errors.PermissionDeniedError`.
    """
    messages = error_messages(body)
    message = "; ".join(messages) if messages else f"{method} {path}: HTTP {status}"
    cls = STATUS_ERRORS.get(status)
    if cls is None:
        cls = InvalidRequestError if 400 <= status < 500 else KustosError
    if cls is InvalidRequestError and _CAS_MARKER in message.lower():
        cls = CheckAndSetError
    if cls is PermissionDeniedError and any(m in message.lower() for m in _INVALID_TOKEN_MARKERS):
        cls = InvalidTokenError
    if cls is SealedError and not messages:
        return SealedError()
    return cls(message)
