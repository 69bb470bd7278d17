"""The one place the server asks "may this token do that here?".

Every permission check goes through :func:`authorize` (or the ``Authorizer``
passed to :func:`kustos.server.app.create_app`), with the request path as
Vault spells it (``secret/data/app/db``, ``sys/mounts/kv``,
``auth/token/create``) and one Vault capability: ``create``, ``read``,
``update``, ``patch``, ``delete``, ``list`` or ``sudo``.

Until the ACL evaluator (``kustos.policy``) replaces it, the rule is: a token
with the ``root`` policy may do everything; any other token may only manage
itself (the ``auth/token/*-self`` endpoints) and ask what it may do
(``sys/capabilities-self``), like Vault's ``default`` policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from kustos.errors import PermissionDeniedError
from kustos.server.tokens import TokenEntry

__all__ = ["CAPABILITIES", "Authorizer", "authorize", "is_login_path", "require"]

CAPABILITIES: Final = frozenset({"create", "read", "update", "patch", "delete", "list", "sudo"})

Authorizer = Callable[[TokenEntry, str, str], bool]
"""``(token, path, capability) -> allowed``; pure and synchronous (it runs on every request)."""

_SELF_SERVICE: Final = frozenset(
    {
        "auth/token/lookup-self",
        "auth/token/renew-self",
        "auth/token/revoke-self",
        "sys/capabilities-self",
    }
)


def is_login_path(path: str) -> bool:
    """An auth method's login endpoint (``auth/<mount>/login``, ``auth/<mount>/login/<user>``).

    A login needs no token, and as in Vault a stale token sent along with it
    (a client's leftover ``~/.vault-token``) is ignored rather than refused.
    """
    if not path.startswith("auth/") or path.startswith("auth/token/"):
        return False
    trimmed = path.rstrip("/")
    return trimmed.endswith("/login") or "/login/" in trimmed


def authorize(token: TokenEntry, path: str, capability: str) -> bool:
    """Interim rule: ``root`` may do everything, others only their own token endpoints."""
    if "root" in token.policies:
        return True
    return path in _SELF_SERVICE and capability in ("read", "update")


def require(authorizer: Authorizer, token: TokenEntry, path: str, capability: str) -> None:
    """Raise :class:`PermissionDeniedError` unless ``authorizer`` allows it."""
    if not authorizer(token, path, capability):
        raise PermissionDeniedError("permission denied")
