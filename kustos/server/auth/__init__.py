"""Auth methods other than tokens: ``kubernetes``, ``approle``, ``userpass``, ``jwt`` and ``aws``.

An operator enables a method at a path (``sys/auth/<path>``, see
:mod:`kustos.server.routes.auth_methods`); its endpoints then answer under
``auth/<path>/``. Each method type is one module with one class that follows
:class:`AuthMethod`: it gets the :class:`~kustos.server.calls.Call`, the
:class:`~kustos.server.auth.mounts.AuthMount` and the path inside the mount.
Login endpoints take no token; everything else (config, roles, users) is
checked with the server's authorizer against the request path.

Neighbours: :mod:`.mounts` (the auth table), :mod:`.records` (barrier-encrypted
records), :mod:`.issuing` (the token every login returns), :mod:`.jwts`
(pure JWT verification for ``kubernetes`` and ``jwt``), :mod:`.keysets` (issuers' key
sets fetched, cached and refreshed on rotation).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from kustos.server.access import Authorizer, require
from kustos.server.auth.mounts import AuthMount, AuthTable, normalize_auth_path
from kustos.server.auth.records import Records, auth_method_families
from kustos.server.barrier import Barrier
from kustos.server.times import Clock
from kustos.server.tokens import TokenStore
from kustos.store.base import StorageBackend

if TYPE_CHECKING:
    from kustos.server.calls import Call, Reply

__all__ = [
    "METHOD_TYPES",
    "AuthMethod",
    "AuthMount",
    "AuthTable",
    "MethodDeps",
    "auth_method_families",
    "build_methods",
    "normalize_auth_path",
]

METHOD_TYPES = ("approle", "aws", "jwt", "kubernetes", "userpass")
"""The auth method types ``sys/auth`` can enable."""


@dataclass(frozen=True)
class MethodDeps:
    """What an auth method needs from the server, passed explicitly."""

    storage: StorageBackend
    barrier: Barrier
    tokens: TokenStore
    clock: Clock
    authorizer: Authorizer
    new_id: Callable[[], str] = lambda: str(uuid.uuid4())
    """Random ids (role ids, secret ids, accessors); tests may pin them."""

    def records(self, mount: AuthMount) -> Records:
        return Records(storage=self.storage, barrier=self.barrier, mount=mount)

    def require(self, call: Call, capability: str) -> None:
        """Raise ``PermissionDeniedError`` unless the call's token has ``capability`` on its path."""
        require(self.authorizer, call.require_token(), call.path.rstrip("/"), capability)


class AuthMethod(Protocol):
    """One auth method type; a single instance serves every mount of its type."""

    def route(self, rest: str) -> str:
        """Route template for metrics and logs (never a role, user or secret id)."""
        ...

    async def handle(self, call: Call, mount: AuthMount, rest: str) -> Reply: ...


def build_methods(deps: MethodDeps) -> dict[str, AuthMethod]:
    """One instance per method type, keyed by type."""
    from kustos.server.auth.approle import AppRoleMethod
    from kustos.server.auth.aws import AwsMethod
    from kustos.server.auth.jwtauth import JwtMethod
    from kustos.server.auth.keysets import KeySets
    from kustos.server.auth.kubernetes import KubernetesMethod
    from kustos.server.auth.userpass import UserpassMethod

    keysets = KeySets(clock=deps.clock)
    return {
        "approle": AppRoleMethod(deps),
        "aws": AwsMethod(deps),
        "jwt": JwtMethod(deps, keysets=keysets),
        "kubernetes": KubernetesMethod(deps, keysets=keysets),
        "userpass": UserpassMethod(deps),
    }
