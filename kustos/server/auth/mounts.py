"""The auth method table: which auth method answers under which ``auth/<path>/``.

Vault keeps enabled auth methods apart from secrets engines (``sys/auth``
versus ``sys/mounts``); so does Kustos. The table is one JSON record at
``core/auth`` (paths and types are not secret). Each enabled method gets a
random uuid and keeps its records under ``auth-methods/<uuid>/``, encrypted
by the barrier (see :mod:`kustos.server.auth.records`), so disabling a
method deletes exactly its data. The built-in ``token/`` method is listed
but lives in :mod:`kustos.server.tokens`.

The table is cached in memory. Another replica's change reaches it when
that commit is announced (:mod:`kustos.server.replicas` calls
:meth:`AuthTable.load`); without announcements (or while they are down) it
is re-read when a request names a path that is not in it, at most once a
second. The table itself is the generic :class:`~kustos.server.pathtable.PathTable`,
shared with the mount table.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kustos.errors import InvalidRequestError
from kustos.server.pathtable import PathEntry, PathTable, normalize_table_path

__all__ = [
    "AUTH_TABLE_KEY",
    "METHOD_PREFIX",
    "AuthMount",
    "AuthTable",
    "normalize_auth_path",
]

AUTH_TABLE_KEY: Final = "core/auth"
METHOD_PREFIX: Final = "auth-methods/"
"""Storage prefix of every auth method's records (``auth-methods/<uuid>/...``)."""


@dataclass(frozen=True)
class AuthMount(PathEntry):
    """One enabled auth method (``path`` is ``kubernetes/``, without ``auth/``)."""

    @property
    def storage_prefix(self) -> str:
        return f"{METHOD_PREFIX}{self.uuid}/"

    @property
    def display_prefix(self) -> str:
        """What issued tokens' display names start with (``kubernetes`` for ``auth/kubernetes/``)."""
        return self.path.strip("/").replace("/", "-")

    def describe(self) -> dict[str, Any]:
        """The method as ``sys/auth`` lists it."""
        return self._listing({"token_type": "default-service"}, options=None)


TOKEN_MOUNT: Final = AuthMount(
    path="token/",
    type="token",
    uuid="token",
    accessor="auth_token_builtin",
    description="token based credentials",
)


def normalize_auth_path(path: str) -> str:
    """``kubernetes`` or ``kubernetes/`` → ``kubernetes/``; refuse malformed or reserved paths."""
    normalized = normalize_table_path(path, what="auth method path")
    if normalized == "token/" or normalized.startswith("token/"):
        raise InvalidRequestError(
            "the token auth method is built in at auth/token/ and cannot be changed"
        )
    return normalized


class AuthTable(PathTable[AuthMount]):
    """The enabled auth methods, cached in memory, stored at ``core/auth``."""

    _key = AUTH_TABLE_KEY
    _name = "auth method table"

    def _parse_entry(self, doc: Mapping[str, Any]) -> AuthMount:
        return AuthMount.from_doc(doc)

    async def enable(
        self, path: str, *, type: str, description: str, config: Mapping[str, Any]
    ) -> AuthMount:
        """Enable a method at ``path`` (already normalized); refuse overlaps with enabled ones."""

        def add(mounts: dict[str, AuthMount]) -> AuthMount:
            self._refuse_overlap(mounts, path)
            mount = AuthMount(
                path=path,
                type=type,
                uuid=str(uuid.uuid4()),
                accessor=f"auth_{type}_{secrets.token_hex(4)}",
                description=description,
                config=dict(config),
                created=self._clock(),
            )
            mounts[path] = mount
            return mount

        return await self._change(add)

    async def disable(self, path: str) -> AuthMount | None:
        """Remove the method at ``path`` and delete all its records; ``None`` if none was there."""
        return await self._remove(path)
